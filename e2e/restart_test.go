//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.etcd.io/bbolt"

	"github.com/otel-iforest/iforest/internal/scenario"
)

// startPersistentCollector runs the distribution with file_storage in
// storageDir and `iforest: {storage: file_storage}`.
func startPersistentCollector(t *testing.T, storageDir string) *collector {
	return startCollectorWith(t, func(c *collector) string {
		return fmt.Sprintf(`extensions:
  file_storage:
    directory: %s
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
processors:
  iforest:
    storage: file_storage
exporters:
  file:
    path: %s
    flush_interval: 100ms
service:
  extensions: [file_storage]
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [otlp]
      processors: [iforest]
      exporters: [file]
`, storageDir, c.endpoint, c.outFile)
	})
}

// restartRows is the seed scenario with spikes in both halves.
func restartRows() (rows []scenario.Row, half int) {
	return scenario.SeedCPU(2024, []int{87, 400, 1000, 1300}), 720
}

// TestRestartResumesDetection: a collector stopped with SIGTERM after half
// the scenario and started again on the same storage directory gives the
// second half the verdicts of a collector that never stopped, and scores
// from the first point after the restart (no new warm-up).
func TestRestartResumesDetection(t *testing.T) {
	rows, half := restartRows()

	// Uninterrupted, through the distribution too.
	ref := startPersistentCollector(t, t.TempDir())
	replay(t, ref.endpoint, writeScenarioCSV(t, rows))
	want := readExported(t, ref.outFile, len(rows))
	ref.stop(t)

	dir := t.TempDir()
	first := startPersistentCollector(t, dir)
	replay(t, first.endpoint, writeScenarioCSV(t, rows[:half]))
	readExported(t, first.outFile, half)
	first.stop(t)
	assert.Contains(t, first.logs.String(), "no saved models in storage yet")

	second := startPersistentCollector(t, dir)
	replay(t, second.endpoint, writeScenarioCSV(t, rows[half:]))
	got := readExported(t, second.outFile, len(rows)-half)
	second.stop(t)
	assert.Contains(t, second.logs.String(), "restored the saved models; detection resumes")
	for _, l := range strings.Split(second.logs.String(), "\n") {
		assert.False(t, strings.Contains(l, "warn") && strings.Contains(l, "iforest"), "warning: %s", l)
	}

	var flagged int
	for i := half; i < len(rows); i++ {
		ts := rows[i].Time.UnixNano()
		w, g := want[ts], got[ts]
		require.Equal(t, w.scored, g.scored, "row %d scored", i)
		require.Equal(t, w.detected, g.detected, "row %d anomaly.detected (score %v vs %v)", i, w.score, g.score)
		require.InDelta(t, w.score, g.score, 1e-12, "row %d score", i)
		if g.detected {
			flagged++
		}
	}
	assert.True(t, got[rows[half].Time.UnixNano()].scored, "the first point after the restart is scored")
	checkVerdicts(t, rows[half:], got)
	t.Logf("second half: %d rows identical to the uninterrupted run, %d flagged", len(rows)-half, flagged)
}

// TestRestartWithCorruptSnapshot: the saved state is damaged while the
// collector is down, in the two ways a disk can do it:
//
//   - bytes of our data are overwritten inside the bbolt file, which stays
//     valid (bbolt checksums only its meta pages): the chunk is rejected;
//   - the whole bbolt file is garbage, which file_storage cannot open: the
//     processor moves it aside and file_storage starts a new one.
//
// Either way the collector starts, says once what happened, and detects
// again after a fresh warm-up.
func TestRestartWithCorruptSnapshot(t *testing.T) {
	for _, c := range []struct {
		name, message string
		damage        func(t *testing.T, dir string)
	}{
		{"value damaged", "part of the saved models could not be restored; those start fresh (warm up again): series: reading snapshot: chunk 0 of 1 is damaged (checksum mismatch)", func(t *testing.T, dir string) {
			t.Logf("overwrote bytes inside %d copies of the snapshot in the bbolt file", corruptSnapshots(t, dir))
		}},
		{"database unreadable", "the storage file is damaged; moved it aside (delete it when you like) and started a new one: detection starts fresh", func(t *testing.T, dir string) {
			files, err := filepath.Glob(filepath.Join(dir, "*"))
			require.NoError(t, err)
			require.NotEmpty(t, files)
			for _, f := range files {
				require.NoError(t, os.WriteFile(f, bytes.Repeat([]byte("garbage!"), 4096), 0o600))
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) { restartDamaged(t, c.damage, c.message) })
	}
}

func restartDamaged(t *testing.T, damage func(t *testing.T, dir string), message string) {
	rows, half := restartRows()
	dir := t.TempDir()
	first := startPersistentCollector(t, dir)
	replay(t, first.endpoint, writeScenarioCSV(t, rows[:half]))
	readExported(t, first.outFile, half)
	first.stop(t)

	damage(t, dir)

	second := startPersistentCollector(t, dir)
	replay(t, second.endpoint, writeScenarioCSV(t, rows[half:]))
	got := readExported(t, second.outFile, len(rows)-half)
	second.stop(t)
	logs := second.logs.String()
	assert.Equal(t, 1, strings.Count(logs, message), "one clear message:\n%s", logs)
	warnings := warningLines(logs)
	assert.Len(t, warnings, 1, "nothing else about the saved state")
	t.Logf("collector said: %s", strings.Join(warnings, "\n"))

	// A fresh warm-up: the first 32 points get no verdict, later ones do,
	// and both spikes of the second half are caught at their first point.
	for i := half; i < half+32; i++ {
		assert.False(t, got[rows[i].Time.UnixNano()].scored, "row %d scored during the new warm-up", i)
	}
	for _, s := range []int{1000, 1300} {
		p := got[rows[s].Time.UnixNano()]
		assert.True(t, p.detected, "spike at row %d not flagged after the fresh start (score %.3f)", s, p.score)
	}
	var fp int
	for i := half + 32; i < len(rows); i++ {
		p := got[rows[i].Time.UnixNano()]
		require.True(t, p.scored, "row %d not scored", i)
		if p.detected && !rows[i].Anomaly {
			fp++
		}
	}
	assert.LessOrEqual(t, fp, 3)
}

// warningLines returns the collector's log lines at level warn or error.
func warningLines(logs string) []string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "\twarn\t") || strings.Contains(l, "\terror\t") {
			out = append(out, l)
		}
	}
	return out
}

// corruptSnapshots overwrites a stretch of every copy of the processor's
// per-series snapshot (found by the detector snapshot's magic) in the
// storage directory's bbolt files: there is one in each slot of chunks, and
// old copies may linger in freed pages. A chunk sits in contiguous pages,
// so the change stays inside it.
func corruptSnapshots(t *testing.T, dir string) int {
	magic := []byte("\x89IFSNAP\n")
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	require.NoError(t, err)
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for off := 0; ; {
			i := bytes.Index(b[off:], magic)
			if i < 0 {
				break
			}
			at := off + i + 200
			require.Less(t, at+16, len(b))
			for j := at; j < at+16; j++ {
				b[j] ^= 0x5A
			}
			n++
			off += i + len(magic)
		}
		require.NoError(t, os.WriteFile(f, b, 0o600))
	}
	require.Positive(t, n, "no snapshot found under %s (%v)", dir, files)
	return n
}

// TestRestartWithTruncatedStorage: the storage file of a collector with
// thousands of series is cut while the collector is down, to half its size
// or by 1 MiB (bbolt grows its file ahead of its data, so a cut may miss the
// data: then nothing is damaged), or by 1 MiB of its data. bbolt would
// fault opening such a file (on every start, in a goroutine of its own).
// The collector starts and scores, twice in a row: the first start says
// once that the file was damaged and moved aside, and starts fresh; the
// second restores what the first saved, without a warning.
func TestRestartWithTruncatedStorage(t *testing.T) {
	const series, points = 3000, 3000 * 40 // past the warm-up of 32 points
	for _, c := range []struct {
		name string
		cut  func(size, data int64) int64
	}{
		{"cut to half", func(size, _ int64) int64 { return size / 2 }},
		{"cut by 1 MiB", func(size, _ int64) int64 { return size - 1<<20 }},
		{"1 MiB of its data cut", func(_, data int64) int64 { return data - 1<<20 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "processor_iforest_")
			first := startPersistentCollector(t, dir)
			loadSeries(t, first, series, points)
			first.stop(t)

			size, data := storeSizes(t, file)
			cut := c.cut(size, data)
			damaged := cut < data
			require.NoError(t, os.Truncate(file, cut))
			t.Logf("%s: %.1f MiB, %.1f MiB of them data, cut to %.1f MiB (damaged: %v)", filepath.Base(file), mib(size), mib(data), mib(cut), damaged)

			for run := range 2 {
				c := startPersistentCollector(t, dir)
				scored := loadSeries(t, c, series, points)
				c.stop(t)
				logs := c.logs.String()
				warnings := warningLines(logs)
				fresh := run == 0 && damaged
				if fresh {
					require.Len(t, warnings, 1, "one warning:\n%s", logs)
					assert.Contains(t, warnings[0], "the storage file is damaged; moved it aside (delete it when you like) and started a new one: detection starts fresh")
					assert.Contains(t, warnings[0], "truncated")
					_, err := os.Stat(file + ".damaged")
					assert.NoError(t, err, "the damaged file is kept aside")
					// Each series warms up again: 8 of its 40 points are scored.
					assert.Equal(t, series*8, scored)
				} else {
					assert.Empty(t, warnings)
					assert.Contains(t, logs, "restored the saved models; detection resumes")
					assert.Equal(t, points, scored, "restored models score every point")
				}
				t.Logf("start %d: %d of %d datapoints scored; %d warnings", run+1, scored, points, len(warnings))
			}
		})
	}
}

// loadSeries sends points datapoints of series series (round-robin) with
// iforest-replay --load and returns how many came out scored.
func loadSeries(t *testing.T, c *collector, series, points int) int {
	out, err := exec.Command(replayBin, "--load", "--endpoint", c.endpoint, "--wait", "30s", "--series", fmt.Sprint(series),
		"--points", fmt.Sprint(points), "--batch", "500", "--workers", "4", "--quiet").CombinedOutput()
	require.NoError(t, err, "iforest-replay --load: %s", out)
	deadline := time.Now().Add(90 * time.Second)
	for {
		total, scored, _ := countLoadExport(t, c.outFile)
		if total >= points || time.Now().After(deadline) {
			require.Equal(t, points, total, "datapoints out must equal datapoints in")
			return scored
		}
		time.Sleep(time.Second)
	}
}

// storeSizes returns the size of a bbolt file and how much of it its
// database uses.
func storeSizes(t *testing.T, file string) (size, data int64) {
	fi, err := os.Stat(file)
	require.NoError(t, err)
	db, err := bbolt.Open(file, 0o600, &bbolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.View(func(tx *bbolt.Tx) error { data = tx.Size(); return nil }))
	return fi.Size(), data
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// TestReplayOfBadValues: a CSV full of bad cells (empty, NaN, inf, huge,
// tiny, text) through the distribution. The collector stays up and every
// datapoint that iforest-replay sent comes out.
func TestReplayOfBadValues(t *testing.T) {
	bad := []string{"", "NaN", "nan", "inf", "-Inf", "+Infinity", "1e308", "-1e308", "1.7976931348623157e308",
		"4.9e-324", "-0", "1e400", "abc", "12abc", "0x1p-2", " 42 ", "1_000", "--1", "∞", "null"}
	file := filepath.Join(t.TempDir(), "bad.csv")
	var sb strings.Builder
	sb.WriteString("timestamp,value\n")
	rows := scenario.SeedCPU(5, nil)
	for i, r := range rows[:400] {
		v := strconv.FormatFloat(r.Value, 'f', 3, 64)
		if i%3 == 1 {
			v = bad[(i/3)%len(bad)]
		}
		fmt.Fprintf(&sb, "%s,%q\n", r.Time.Format("2006-01-02 15:04:05"), v)
	}
	require.NoError(t, os.WriteFile(file, []byte(sb.String()), 0o600))

	c := startCollector(t, " {}")
	out, err := exec.Command(replayBin, "--endpoint", c.endpoint, "--file", file, "--metric", "system.cpu.utilization", "--wait", "30s").CombinedOutput()
	require.NoError(t, err, "iforest-replay: %s", out)
	t.Logf("iforest-replay: %s", bytes.TrimSpace(out))
	m := regexp.MustCompile(`sent (\d+) datapoints .*\((\d+) empty/non-numeric cells skipped`).FindSubmatch(out)
	require.NotNil(t, m, "replay report: %s", out)
	sent, _ := strconv.Atoi(string(m[1]))
	skipped, _ := strconv.Atoi(string(m[2]))
	assert.Equal(t, 400, sent+skipped)
	assert.Greater(t, skipped, 50)

	pts := readExported(t, c.outFile, sent)
	scored := 0
	for _, p := range pts {
		if p.scored {
			scored++
		}
	}
	require.Nil(t, c.cmd.ProcessState, "the collector is still running")
	c.stop(t)
	assert.Greater(t, scored, sent/2, "the series is still scored around the bad values")
	t.Logf("%d datapoints sent, %d out, %d scored", sent, len(pts), scored)
}
