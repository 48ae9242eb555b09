//go:build e2e

// Package e2e runs the built otelcol-iforest distribution as a user would:
// OTLP in, iforest with default settings, file exporter out, fed by
// iforest-replay. Run with `make test` (which builds the distribution first)
// or `go test -tags e2e ./e2e/` after `make dist`.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/otel-iforest/iforest/internal/scenario"
)

var repoRoot = func() string {
	wd, _ := os.Getwd()
	return filepath.Dir(wd)
}()

func distBinary(t *testing.T) string {
	bin := filepath.Join(repoRoot, "_build", "otelcol-iforest")
	_, err := os.Stat(bin)
	require.NoError(t, err, "the distribution is not built: run `make dist` first")
	return bin
}

var replayBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "iforest-e2e")
	if err != nil {
		panic(err)
	}
	replayBin = filepath.Join(dir, "iforest-replay")
	cmd := exec.Command("go", "build", "-o", replayBin, "./cmd/iforest-replay")
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building iforest-replay: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// collector is a running distribution writing what it exports to outFile.
type collector struct {
	cmd      *exec.Cmd
	endpoint string
	dir      string // the run's temporary directory, for further output files
	outFile  string
	logs     *bytes.Buffer
}

// startCollector runs the distribution with processorYAML as the iforest
// processor's settings.
func startCollector(t *testing.T, processorYAML string) *collector {
	return startCollectorWith(t, func(c *collector) string {
		return fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
processors:
  iforest:%s
exporters:
  file:
    path: %s
    flush_interval: 100ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [otlp]
      processors: [iforest]
      exporters: [file]
`, c.endpoint, processorYAML, c.outFile)
	})
}

// startCollectorWith runs the distribution with the whole configuration that
// config returns; config is given the collector with its OTLP endpoint, its
// temporary directory and outFile (dir/out.jsonl) set.
func startCollectorWith(t *testing.T, config func(c *collector) string) *collector {
	dir := t.TempDir()
	port := freePort(t)
	c := &collector{endpoint: fmt.Sprintf("127.0.0.1:%d", port), dir: dir, outFile: filepath.Join(dir, "out.jsonl"), logs: new(bytes.Buffer)}
	cfg := config(c)
	cfgFile := filepath.Join(dir, "config.yaml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(cfg), 0o600))
	c.cmd = exec.Command(distBinary(t), "--config", cfgFile)
	c.cmd.Stdout, c.cmd.Stderr = c.logs, c.logs
	require.NoError(t, c.cmd.Start())
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			_ = c.cmd.Process.Kill()
			_ = c.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("collector output:\n%s", c.logs.String())
		}
	})
	return c
}

// stop sends SIGTERM and waits for a clean exit.
func (c *collector) stop(t *testing.T) {
	require.NoError(t, c.cmd.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, "collector did not exit cleanly")
	case <-time.After(30 * time.Second):
		t.Fatal("collector did not stop within 30s of SIGTERM")
	}
}

func replay(t *testing.T, endpoint, csvFile string, extra ...string) {
	args := append([]string{"--endpoint", endpoint, "--file", csvFile, "--metric", "system.cpu.utilization", "--wait", "30s"}, extra...)
	out, err := exec.Command(replayBin, args...).CombinedOutput()
	require.NoError(t, err, "iforest-replay: %s", out)
	t.Logf("iforest-replay: %s", bytes.TrimSpace(out))
}

// point is one exported datapoint's verdict.
type point struct {
	value    float64
	score    float64
	scored   bool
	detected bool
}

// readExported parses the file exporter's JSON lines into datapoints keyed
// by timestamp, waiting until want datapoints have arrived.
func readExported(t *testing.T, file string, want int) map[int64]point {
	deadline := time.Now().Add(60 * time.Second)
	for {
		pts := parseExported(t, file)
		if len(pts) >= want || time.Now().After(deadline) {
			require.Len(t, pts, want, "datapoints out must equal datapoints in")
			return pts
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func parseExported(t *testing.T, file string) map[int64]point {
	pts := map[int64]point{}
	exportedGauges(t, file, func(_ pmetric.Metric, dp pmetric.NumberDataPoint) {
		p := point{value: dp.DoubleValue()}
		if v, ok := dp.Attributes().Get("anomaly.score"); ok {
			p.scored, p.score = true, v.Double()
		}
		if v, ok := dp.Attributes().Get("anomaly.detected"); ok {
			p.detected = v.Bool()
		}
		pts[int64(dp.Timestamp())] = p
	})
	return pts
}

// exportedGauges calls fn for every gauge datapoint in the file exporter's
// JSON lines written so far (none if the file does not exist yet; a line
// being written is skipped).
func exportedGauges(t *testing.T, file string, fn func(pmetric.Metric, pmetric.NumberDataPoint)) {
	f, err := os.Open(file)
	if os.IsNotExist(err) {
		return
	}
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var um pmetric.JSONUnmarshaler
	for sc.Scan() {
		md, err := um.UnmarshalMetrics(sc.Bytes())
		if err != nil {
			continue
		}
		for _, rm := range md.ResourceMetrics().All() {
			for _, sm := range rm.ScopeMetrics().All() {
				for _, m := range sm.Metrics().All() {
					for _, dp := range m.Gauge().DataPoints().All() {
						fn(m, dp)
					}
				}
			}
		}
	}
}

func writeScenarioCSV(t *testing.T, rows []scenario.Row) string {
	file := filepath.Join(t.TempDir(), "scenario.csv")
	f, err := os.Create(file)
	require.NoError(t, err)
	w := csv.NewWriter(f)
	require.NoError(t, w.Write([]string{"timestamp", "value", "injected_label"}))
	for _, r := range rows {
		label := "0"
		if r.Anomaly {
			label = "1"
		}
		require.NoError(t, w.Write([]string{r.Time.Format("2006-01-02 15:04:05"), strconv.FormatFloat(r.Value, 'f', 4, 64), label}))
	}
	w.Flush()
	require.NoError(t, f.Close())
	return file
}

// checkVerdicts applies the acceptance rule of the seed scenario: every spike
// flagged at its first point, at least 14 of the 15 spike rows flagged, at
// most 2 normal rows flagged.
func checkVerdicts(t *testing.T, rows []scenario.Row, pts map[int64]point) {
	var tp, fp, anomalies int
	for i, r := range rows {
		p, ok := pts[r.Time.UnixNano()]
		require.True(t, ok, "row %d missing from the output", i)
		assert.InDelta(t, r.Value, p.value, 1e-3, "row %d value changed", i)
		if r.Anomaly {
			anomalies++
			if p.detected {
				tp++
			}
			if i == 0 || !rows[i-1].Anomaly {
				assert.True(t, p.detected, "spike starting at row %d not flagged at its first point (score %.3f)", i, p.score)
			}
		} else if p.detected {
			fp++
		}
	}
	t.Logf("flagged %d of %d spike rows, %d of %d normal rows", tp, anomalies, fp, len(rows)-anomalies)
	assert.GreaterOrEqual(t, tp, anomalies-1)
	assert.LessOrEqual(t, fp, 2)
}

// TestSeedScenarioThroughDistribution replays a generated copy of the seed
// scenario through the built collector with the default processor settings.
func TestSeedScenarioThroughDistribution(t *testing.T) {
	rows := scenario.SeedCPU(2024, nil)
	c := startCollector(t, " {}")
	replay(t, c.endpoint, writeScenarioCSV(t, rows))
	pts := readExported(t, c.outFile, len(rows))
	c.stop(t)
	checkVerdicts(t, rows, pts)
}

// TestSharedSeedFile does the same with the seed file itself, when the
// shared data folder is next to the repository.
func TestSharedSeedFile(t *testing.T) {
	file := filepath.Join(repoRoot, "..", "shared", "data", "seed", "seed_cpu.csv")
	if _, err := os.Stat(file); err != nil {
		t.Skip("../shared/data/seed not present")
	}
	rows := readSeedCSV(t, file)
	c := startCollector(t, " {}")
	replay(t, c.endpoint, file)
	pts := readExported(t, c.outFile, len(rows))
	c.stop(t)
	checkVerdicts(t, rows, pts)
}

func readSeedCSV(t *testing.T, file string) []scenario.Row {
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	var rows []scenario.Row
	for _, r := range recs[1:] {
		ts, err := time.Parse("2006-01-02 15:04:05", r[col["timestamp"]])
		require.NoError(t, err)
		v, err := strconv.ParseFloat(r[col["value"]], 64)
		require.NoError(t, err)
		rows = append(rows, scenario.Row{Time: ts, Value: v, Anomaly: r[col["injected_label"]] == "1"})
	}
	return rows
}
