//go:build e2e

package e2e

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/otel-iforest/iforest/internal/scenario"
)

// What iforest-eval puts around a CSV's columns (and the series of a
// Prometheus answer whose job is its service name): a series' identity,
// hence its model's random stream, includes them, so a capture sent with
// them has the same series as replay.
const (
	evalService = "iforest-eval-replay"
	evalScope   = "github.com/otel-iforest/iforest/cmd/iforest-eval"
)

var seedColumns = []string{"value", "injected_label"}

// seedVerdict is one datapoint's verdict as text: score and flag, empty
// while there is none.
type seedVerdict struct{ score, detected string }

// replayedVerdicts runs `iforest-eval replay` on csvFile and returns every
// column's verdict by RFC 3339 time.
func replayedVerdicts(t *testing.T, csvFile string) map[string]map[string]seedVerdict {
	out := filepath.Join(t.TempDir(), "replay.csv")
	b, err := exec.Command(iforestEval(t), "replay", "--csv", csvFile, "--out", out).CombinedOutput()
	require.NoError(t, err, "iforest-eval replay: %s", b)
	recs := readCSV(t, out)
	require.Equal(t, []string{"timestamp", "value.score", "value.detected", "injected_label.score", "injected_label.detected"}, recs[0])
	vs := map[string]map[string]seedVerdict{}
	for k, col := range seedColumns {
		vs[col] = map[string]seedVerdict{}
		for _, r := range recs[1:] {
			vs[col][rfc3339(t, r[0])] = seedVerdict{r[1+2*k], r[2+2*k]}
		}
	}
	return vs
}

// backtestVerdicts runs `iforest-eval backtest` on input and returns every
// series' verdict by time, and the --json summary.
func backtestVerdicts(t *testing.T, input string) (map[string]map[string]seedVerdict, map[string]any) {
	out := filepath.Join(t.TempDir(), "verdicts.csv")
	cmd := exec.Command(iforestEval(t), "backtest", "--json", "--verdicts", out, "--out", filepath.Join(t.TempDir(), "report.html"), input)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	require.NoError(t, err, "iforest-eval backtest %s: %s", input, stderr.String())
	var summary map[string]any
	require.NoError(t, json.Unmarshal(stdout, &summary))
	recs := readCSV(t, out)
	require.Equal(t, []string{"metric", "attributes", "resource", "timestamp", "value", "score", "detected", "incident", "incident_id"}, recs[0])
	vs := map[string]map[string]seedVerdict{}
	for _, r := range recs[1:] {
		require.Empty(t, r[1], "%s: no datapoint attributes", r[0])
		require.Equal(t, "service.name="+evalService, r[2])
		if vs[r[0]] == nil {
			vs[r[0]] = map[string]seedVerdict{}
		}
		vs[r[0]][r[3]] = seedVerdict{r[5], r[6]}
	}
	return vs, summary
}

func readCSV(t *testing.T, file string) [][]string {
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	return recs
}

func rfc3339(t *testing.T, csvTime string) string {
	ts, err := time.Parse("2006-01-02 15:04:05", csvTime)
	require.NoError(t, err)
	return ts.UTC().Format(time.RFC3339Nano)
}

// captureThroughDistribution sends csvFile's columns through the built
// collector, OTLP in, no processor, two file exporters out: plain OTLP JSON
// lines, and compression: zstd. It returns both files.
func captureThroughDistribution(t *testing.T, csvFile string, rows int) (plain, compressed string) {
	c := startCollectorWith(t, func(c *collector) string {
		compressed = filepath.Join(c.dir, "capture.zst")
		return fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
exporters:
  file/plain:
    path: %s
    flush_interval: 100ms
  file/zstd:
    path: %s
    compression: zstd
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [file/plain, file/zstd]
`, c.endpoint, c.outFile, compressed)
	})
	out, err := exec.Command(replayBin, "--endpoint", c.endpoint, "--file", csvFile, "--columns", strings.Join(seedColumns, ","),
		"--resource", "service.name="+evalService, "--scope", evalScope, "--wait", "30s").CombinedOutput()
	require.NoError(t, err, "iforest-replay: %s", out)
	want := len(seedColumns) * rows
	deadline := time.Now().Add(60 * time.Second)
	for n := 0; n < want && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		n = 0
		exportedGauges(t, c.outFile, func(pmetric.Metric, pmetric.NumberDataPoint) { n++ })
	}
	c.stop(t) // flushes and closes both files
	return c.outFile, compressed
}

// prometheusAnswer writes csvFile's columns as a query_range answer whose
// job is iforest-eval's service name.
func prometheusAnswer(t *testing.T, csvFile string) string {
	recs := readCSV(t, csvFile)
	var series []string
	for j, col := range recs[0] {
		if col == "timestamp" {
			continue
		}
		var vals []string
		for _, r := range recs[1:] {
			ts, err := time.Parse("2006-01-02 15:04:05", r[0])
			require.NoError(t, err)
			vals = append(vals, fmt.Sprintf(`[%d,%q]`, ts.Unix(), r[j]))
		}
		series = append(series, fmt.Sprintf(`{"metric":{"__name__":%q,"job":%q},"values":[%s]}`, col, evalService, strings.Join(vals, ",")))
	}
	file := filepath.Join(t.TempDir(), "query_range.json")
	doc := `{"status":"success","data":{"resultType":"matrix","result":[` + strings.Join(series, ",") + "]}}"
	require.NoError(t, os.WriteFile(file, []byte(doc), 0o600))
	return file
}

// checkBacktestFormats backtests csvFile as CSV, as captured by the
// distribution (plain and zstd) and as a Prometheus answer, and checks
// that every datapoint's verdict is replay's.
func checkBacktestFormats(t *testing.T, csvFile string) {
	rows := len(readCSV(t, csvFile)) - 1
	want := replayedVerdicts(t, csvFile)
	flagged := 0
	for _, v := range want["value"] {
		if v.detected == "true" {
			flagged++
		}
	}
	require.Greater(t, flagged, 0, "replay flags the spikes")

	plain, compressed := captureThroughDistribution(t, csvFile, rows)
	for name, input := range map[string]string{
		"csv":                 csvFile,
		"file exporter":       plain,
		"file exporter, zstd": compressed,
		"prometheus":          prometheusAnswer(t, csvFile),
	} {
		got, summary := backtestVerdicts(t, input)
		assert.Equal(t, float64(len(seedColumns)*rows), summary["points"], name)
		assert.Equal(t, 0.0, summary["input_problems"], "%s: %v", name, summary["problems"])
		for _, col := range seedColumns {
			require.Len(t, got[col], rows, "%s: %s", name, col)
			diff := 0
			for ts, w := range want[col] {
				if g := got[col][ts]; g != w {
					if diff++; diff <= 5 {
						t.Errorf("%s: %s at %s: replay %+v, backtest %+v", name, col, ts, w, g)
					}
				}
			}
			assert.Zero(t, diff, "%s: %s: points whose verdict differs from replay's", name, col)
		}
		t.Logf("%s: %d points, %v flagged, %v incidents, as replay", name, len(seedColumns)*rows, summary["flagged"], summary["incidents"])
	}
}

// TestBacktestSharedSeedFormats: ../shared/data/seed/seed_cpu.csv.
func TestBacktestSharedSeedFormats(t *testing.T) {
	file := filepath.Join(repoRoot, "..", "shared", "data", "seed", "seed_cpu.csv")
	if _, err := os.Stat(file); err != nil {
		t.Skip("../shared/data/seed not present")
	}
	checkBacktestFormats(t, file)
}

// TestBacktestGeneratedSeedFormats: a generated copy of the seed scenario.
func TestBacktestGeneratedSeedFormats(t *testing.T) {
	checkBacktestFormats(t, writeScenarioCSV(t, scenario.SeedCPU(77, nil)))
}
