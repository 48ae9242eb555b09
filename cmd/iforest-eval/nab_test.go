package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otel-iforest/iforest/internal/nab"
)

const tinyRows = 600

// tinyCorpus writes a two-file NAB corpus: catA/spiky.csv has a spike at
// rows 400..404 inside its one window (rows 390..429); catB/quiet.csv has
// no windows. It returns the data directory and the windows file.
func tinyCorpus(t *testing.T) (dataDir, windowsPath string) {
	t.Helper()
	dir := t.TempDir()
	dataDir = filepath.Join(dir, "data")
	start := time.Date(2014, 4, 1, 0, 0, 0, 0, time.UTC)
	rowTime := func(i int) time.Time { return start.Add(time.Duration(i) * 5 * time.Minute) }
	rng := rand.New(rand.NewPCG(1, 2))
	for _, name := range []string{"catA/spiky.csv", "catB/quiet.csv"} {
		var b strings.Builder
		b.WriteString("timestamp,value\n")
		for i := range tinyRows {
			v := 50 + 3*rng.NormFloat64()
			if name == "catA/spiky.csv" && i >= 400 && i < 405 {
				v = 120
			}
			fmt.Fprintf(&b, "%s,%.3f\n", nab.FormatTime(rowTime(i)), v)
		}
		path := filepath.Join(dataDir, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	}
	windowsPath = filepath.Join(dir, "windows.json")
	windows := fmt.Sprintf(`{"catA/spiky.csv": [["%s.000000", "%s.000000"]], "catB/quiet.csv": []}`,
		nab.FormatTime(rowTime(390)), nab.FormatTime(rowTime(429)))
	require.NoError(t, os.WriteFile(windowsPath, []byte(windows), 0o644))
	return dataDir, windowsPath
}

func TestNABTinyCorpus(t *testing.T) {
	dataDir, windowsPath := tinyCorpus(t)
	out := t.TempDir()
	ws, err := nab.LoadWindows(windowsPath)
	require.NoError(t, err)
	cfg, err := loadProcessorConfig("")
	require.NoError(t, err)
	var log bytes.Buffer
	sum, err := evalNAB(context.Background(), nabOptions{
		Data: dataDir, Out: out, Name: "tiny", Windows: ws, Config: cfg, Workers: 2,
		Progress: &progress{w: &log, name: "nab"},
	})
	require.NoError(t, err)
	assert.Contains(t, log.String(), "[2/2]")
	assert.Contains(t, log.String(), "nab: 2 files, 1200 rows")

	for _, name := range []string{"catA/spiky.csv", "catB/quiet.csv"} {
		in, err := os.ReadFile(filepath.Join(dataDir, filepath.FromSlash(name)))
		require.NoError(t, err)
		inLines := strings.Split(strings.TrimSpace(string(in)), "\n")

		cat, file, _ := strings.Cut(name, "/")
		path := filepath.Join(out, "tiny", cat, "tiny_"+file)
		fh, err := os.Open(path)
		require.NoError(t, err, "results file at OUT/NAME/<category>/NAME_<file>.csv")
		sc := bufio.NewScanner(fh)
		require.True(t, sc.Scan())
		assert.Equal(t, "timestamp,value,anomaly_score,label,detected", sc.Text())
		rows, detected := 0, 0
		for sc.Scan() {
			f := strings.Split(sc.Text(), ",")
			require.Len(t, f, 5)
			in := strings.Split(inLines[rows+1], ",")
			assert.Equal(t, in[0], f[0], "timestamp of row %d", rows)
			assert.Equal(t, parse(t, in[1]), parse(t, f[1]), "value of row %d", rows)
			score := parse(t, f[2])
			assert.True(t, score >= 0 && score <= 1, "score %v of row %d", score, rows)
			if rows < cfg.Warmup { // no verdicts yet
				assert.Zero(t, score, "row %d", rows)
			}
			want := "0"
			if name == "catA/spiky.csv" && rows >= 390 && rows <= 429 {
				want = "1"
			}
			assert.Equal(t, want, f[3], "label of row %d", rows)
			assert.Contains(t, []string{"0", "1"}, f[4], "detected of row %d", rows)
			if f[4] == "1" {
				detected++
				assert.Greater(t, score, 0.0, "a detected row was scored (row %d)", rows)
			}
			rows++
		}
		require.NoError(t, sc.Err())
		fh.Close()
		assert.Equal(t, tinyRows, rows, "one results row per input row")
		if name == "catA/spiky.csv" {
			assert.Positive(t, detected, "the processor's own verdicts flag the spike")
		}
	}

	// The spike is unmissable: some threshold catches it without false
	// alarms, so the window is hit and the standard score is positive.
	assert.Equal(t, 2, sum.Files)
	assert.Equal(t, 1, sum.Windows)
	std := sum.Profiles[0]
	assert.Equal(t, nab.Standard, std.Profile)
	assert.Equal(t, 1, std.TP)
	assert.Greater(t, std.Score, 50.0)

	// Scoring the written files gives the same summary.
	// At the configured threshold the spike's window is hit.
	require.NotNil(t, sum.Alarms)
	assert.Equal(t, 1, sum.Alarms.WindowsHit)
	assert.Equal(t, 1, sum.Alarms.Windows)
	assert.Positive(t, sum.Alarms.SeriesDays)

	files, series, err := loadResultsDir(filepath.Join(out, "tiny"), ws)
	require.NoError(t, err)
	assert.Equal(t, sum, scoreCorpus("tiny", files, series))
	thr, ok := summaryThreshold(filepath.Join(out, "tiny", summaryFile))
	require.True(t, ok)
	assert.Equal(t, std.Threshold, thr)

	// And the plot of the spiky file shows the window and the detection.
	png := filepath.Join(t.TempDir(), "spiky.png")
	require.NoError(t, runPlot([]string{"--csv", filepath.Join(out, "tiny", "catA", "tiny_spiky.csv"), "--windows", windowsPath, "--out", png}))
	checkPNG(t, png)
}

func parse(t *testing.T, s string) float64 {
	t.Helper()
	v, err := nab.ParseTime(s)
	if err == nil {
		return float64(v.Unix())
	}
	var f float64
	_, err = fmt.Sscan(s, &f)
	require.NoError(t, err, s)
	return f
}

// checkPNG decodes a plot and looks for the window shading and a red
// detection marker.
func checkPNG(t *testing.T, path string) {
	t.Helper()
	fh, err := os.Open(path)
	require.NoError(t, err)
	defer fh.Close()
	img, err := png.Decode(fh)
	require.NoError(t, err)
	assert.Equal(t, 1400, img.Bounds().Dx())
	assert.Equal(t, 600, img.Bounds().Dy())
	var window, flag bool
	for y := 0; y < img.Bounds().Dy(); y++ {
		for x := 0; x < img.Bounds().Dx(); x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			c := [3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8)}
			window = window || c == [3]uint8{colWindow.R, colWindow.G, colWindow.B}
			flag = flag || c == [3]uint8{colFlag.R, colFlag.G, colFlag.B}
		}
	}
	assert.True(t, window, "window shading")
	assert.True(t, flag, "detections or threshold in red")
}

func TestCheckName(t *testing.T) {
	assert.NoError(t, checkName("iforest"))
	assert.NoError(t, checkName("iforest-v2"))
	for _, bad := range []string{"", "my_detector", "a/b", ".", ".."} {
		assert.Error(t, checkName(bad), bad)
	}
	err := runNAB([]string{"--data", "d", "--windows", "w", "--out", "o", "--name", "my_detector"})
	var ue usageError
	assert.ErrorAs(t, err, &ue)
}

func TestLoadProcessorConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}
	cfg, err := loadProcessorConfig(write("ok.yaml", "trees: 10\nwarmup: 40\n"))
	require.NoError(t, err)
	assert.Equal(t, 10, cfg.Trees)
	assert.Equal(t, 40, cfg.Warmup)
	def, err := loadProcessorConfig("")
	require.NoError(t, err)
	assert.Equal(t, def.SampleSize, cfg.SampleSize, "unset keys keep their defaults")

	_, err = loadProcessorConfig(write("empty.yaml", ""))
	assert.NoError(t, err)
	_, err = loadProcessorConfig(write("typo.yaml", "tress: 10\n"))
	assert.Error(t, err, "unknown key")
	_, err = loadProcessorConfig(write("bad.yaml", "trees: 0\n"))
	assert.Error(t, err, "invalid value")
	_, err = loadProcessorConfig(write("metric.yaml", "output:\n  mode: metric\n"))
	assert.Error(t, err, "no attributes to read")
	_, err = loadProcessorConfig(filepath.Join(dir, "missing.yaml"))
	assert.Error(t, err)
}

func TestCorpusNameOf(t *testing.T) {
	assert.Equal(t, "realTweets/Twitter_volume_AAPL.csv", corpusNameOf("/r/iforest/realTweets/iforest_Twitter_volume_AAPL.csv"))
	assert.Equal(t, "realKnownCause/nyc_taxi.csv", corpusNameOf(filepath.Join("x", "realKnownCause", "numenta_nyc_taxi.csv")))
}

func TestLabelSpans(t *testing.T) {
	assert.Nil(t, labelSpans([]bool{false, false}))
	assert.Equal(t, []nab.Span{{First: 0, Last: 1}, {First: 3, Last: 3}, {First: 5, Last: 6}}, labelSpans([]bool{true, true, false, true, false, true, true}))
}

// TestNABCorpus runs the whole benchmark at ../shared/data/nab (next to the
// repository) through the default processor; it takes a few seconds.
func TestNABCorpus(t *testing.T) {
	if testing.Short() {
		t.Skip("full NAB corpus: not in -short")
	}
	root := filepath.Join("..", "..", "..", "shared", "data", "nab")
	if _, err := os.Stat(filepath.Join(root, "labels", "combined_windows.json")); err != nil {
		t.Skipf("NAB corpus not found at %s", root)
	}
	ws, err := nab.LoadWindows(filepath.Join(root, "labels", "combined_windows.json"))
	require.NoError(t, err)
	cfg, err := loadProcessorConfig("")
	require.NoError(t, err)
	began := time.Now()
	sum, err := evalNAB(context.Background(), nabOptions{
		Data: filepath.Join(root, "data"), Out: t.TempDir(), Name: "iforest", Windows: ws, Config: cfg, Workers: 4,
	})
	require.NoError(t, err)
	for _, p := range sum.Profiles {
		t.Logf("%-20s %6.1f (threshold %.6g, TP %d FN %d FP %d)", p.Profile.Name, p.Score, p.Threshold, p.TP, p.FN, p.FP)
		assert.False(t, math.IsNaN(p.Score) || p.Score > 100, p.Profile.Name)
	}
	t.Logf("%d files, %d rows in %v", sum.Files, sum.Rows, time.Since(began).Round(time.Millisecond))
	assert.Equal(t, sum.Windows, sum.Profiles[0].Windows)
	// Regression floors just under the measured levels of the defaults
	// (standard 52.7); raise them as detection improves. At the configured
	// threshold: windows hit and false alarms per series-day.
	require.Equal(t, "standard", sum.Profiles[0].Profile.Name)
	assert.GreaterOrEqual(t, sum.Profiles[0].Score, 52.0)
	require.NotNil(t, sum.Alarms)
	a := sum.Alarms
	t.Logf("at the configured threshold: %d of %d windows hit, %d false-alarm episodes in %.0f series-days (%.3f per series-day)",
		a.WindowsHit, a.Windows, a.FalseEpisodes, a.SeriesDays, a.EpisodesPerSeriesDay())
	assert.GreaterOrEqual(t, float64(a.WindowsHit), 0.8*float64(a.Windows))
	assert.LessOrEqual(t, a.EpisodesPerSeriesDay(), 0.12)
}
