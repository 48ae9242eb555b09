//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/otel-iforest/iforest/internal/scenario"
)

// eventsPipeline is the events pipeline: the shape of examples/events.yaml
// with the OTLP receiver instead of host_metrics. The scored metrics go to a
// file exporter (to know when every datapoint has passed) and to the
// anomalyevents connector, whose logs go to a second file exporter.
// Processor and connector run with their defaults (no emit_datapoints)
// unless settings are given (YAML under their ids, each line indented by 4),
// the collector's log goes to logFile too if set, and the anomaly rate to
// rateFile if set.
type eventsPipeline struct {
	processor, connector string
	logFile, rateFile    string
}

func (e eventsPipeline) config(c *collector, eventsFile string) string {
	settings := func(s string) string {
		if s == "" {
			return " {}"
		}
		return "\n" + s
	}
	var b strings.Builder
	fmt.Fprintf(&b, `receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
processors:
  iforest:%s
connectors:
  anomalyevents:%s
exporters:
  file/metrics:
    path: %s
    flush_interval: 100ms
  file/events:
    path: %s
    flush_interval: 100ms
`, c.endpoint, settings(e.processor), settings(e.connector), c.outFile, eventsFile)
	if e.rateFile != "" {
		fmt.Fprintf(&b, "  file/rate:\n    path: %s\n    flush_interval: 100ms\n", e.rateFile)
	}
	b.WriteString("service:\n  telemetry:\n    metrics:\n      level: none\n")
	if e.logFile != "" {
		fmt.Fprintf(&b, "    logs:\n      output_paths: [stderr, %s]\n", e.logFile)
	}
	b.WriteString(`  pipelines:
    metrics:
      receivers: [otlp]
      processors: [iforest]
      exporters: [anomalyevents, file/metrics]
    logs:
      receivers: [anomalyevents]
      exporters: [file/events]
`)
	if e.rateFile != "" {
		b.WriteString("    metrics/rate:\n      receivers: [anomalyevents]\n      exporters: [file/rate]\n")
	}
	return b.String()
}

const replayedMetric = "system.cpu.utilization"

// event is one log record written by the anomalyevents connector.
type event struct {
	name        string
	ts          int64
	severity    plog.SeverityNumber
	severityTxt string
	body        string
	serviceName string
	attrs       map[string]any
}

func (e event) float(key string) (float64, bool) {
	v, ok := e.attrs[key].(float64)
	return v, ok
}

// TestEventsSeedScenario replays a generated copy of the seed scenario
// through OTLP -> iforest -> anomalyevents -> file.
func TestEventsSeedScenario(t *testing.T) {
	rows := scenario.SeedCPU(2024, nil)
	checkEvents(t, rows, writeScenarioCSV(t, rows))
}

// TestEventsSharedSeedFile does the same with the seed file itself, when the
// shared data folder is next to the repository.
func TestEventsSharedSeedFile(t *testing.T) {
	file := filepath.Join(repoRoot, "..", "shared", "data", "seed", "seed_cpu.csv")
	if _, err := os.Stat(file); err != nil {
		t.Skip("../shared/data/seed not present")
	}
	checkEvents(t, readSeedCSV(t, file), file)
}

// spike is a run of consecutive anomalous rows, first..last inclusive.
type spike struct{ first, last int }

func spikesOf(rows []scenario.Row) []spike {
	var out []spike
	for i, r := range rows {
		switch {
		case !r.Anomaly:
		case i > 0 && rows[i-1].Anomaly:
			out[len(out)-1].last = i
		default:
			out = append(out, spike{i, i})
		}
	}
	return out
}

// checkEvents runs the events pipeline on csvFile (whose rows are rows) and
// checks the incident events: one anomaly.started at the first or second
// point of each spike, whose expected band holds at least 95% of the normal
// values; one anomaly.ended after each spike, before the next; nothing else.
func checkEvents(t *testing.T, rows []scenario.Row, csvFile string) {
	spikes := spikesOf(rows)
	require.Len(t, spikes, 3, "the seed scenario has three spikes")

	var eventsFile string
	c := startCollectorWith(t, func(c *collector) string {
		eventsFile = filepath.Join(c.dir, "events.jsonl")
		return eventsPipeline{}.config(c, eventsFile)
	})
	replay(t, c.endpoint, csvFile)
	readExported(t, c.outFile, len(rows))
	waitStable(t, eventsFile, 3*time.Second, 30*time.Second)
	c.stop(t)
	events := readEvents(t, eventsFile)

	rowAt := map[int64]int{}
	var normal []float64
	for i, r := range rows {
		rowAt[r.Time.UnixNano()] = i
		if !r.Anomaly {
			normal = append(normal, r.Value)
		}
	}

	var started, ended []event
	names := map[string]int{}
	for _, e := range events {
		names[e.name]++
		switch e.name {
		case "anomaly.started":
			started = append(started, e)
		case "anomaly.ended":
			ended = append(ended, e)
		}
		_, ok := rowAt[e.ts]
		assert.True(t, ok, "%s event at %s matches no row", e.name, time.Unix(0, e.ts).UTC())
		assert.Equal(t, "iforest-replay", e.serviceName, "%s event: resource service.name", e.name)
		assert.NotEmpty(t, e.body, "%s event: body", e.name)
		assert.Contains(t, e.body, replayedMetric, "%s event: body names the metric", e.name)
		assert.Equal(t, replayedMetric, e.attrs["metric.name"], "%s event: metric.name", e.name)
	}
	t.Logf("events: %v", names)
	assert.Len(t, started, 3, "anomaly.started events")
	assert.Len(t, ended, 3, "anomaly.ended events")
	assert.Len(t, events, len(started)+len(ended), "no events other than anomaly.started and anomaly.ended (emit_datapoints is off)")

	// spikeOf returns the spike whose incident an event at row i can belong
	// to: the last spike starting at or before i.
	spikeOf := func(i int) int {
		s := -1
		for k, sp := range spikes {
			if sp.first <= i {
				s = k
			}
		}
		return s
	}

	startedIn := map[int]event{}
	for _, e := range started {
		i, ok := rowAt[e.ts]
		if !ok {
			continue
		}
		k := spikeOf(i)
		if !assert.GreaterOrEqual(t, k, 0, "anomaly.started at row %d, before any spike", i) {
			continue
		}
		sp := spikes[k]
		assert.True(t, i == sp.first || i == sp.first+1,
			"anomaly.started at row %d, not at the first or second point of the spike at rows %d-%d", i, sp.first, sp.last)
		_, dup := startedIn[k]
		assert.False(t, dup, "two anomaly.started events for the spike at rows %d-%d", sp.first, sp.last)
		startedIn[k] = e
		assert.Equal(t, plog.SeverityNumberWarn, e.severity, "anomaly.started severity number")
		assert.Equal(t, "WARN", e.severityTxt, "anomaly.started severity text")

		lo, okLo := e.float("anomaly.expected.min")
		hi, okHi := e.float("anomaly.expected.max")
		if !assert.True(t, okLo && okHi, "anomaly.started at row %d has no expected band: %v", i, e.attrs) {
			continue
		}
		var in int
		for _, v := range normal {
			if v >= lo && v <= hi {
				in++
			}
		}
		cover := float64(in) / float64(len(normal))
		score, _ := e.float("anomaly.score")
		t.Logf("spike rows %d-%d: anomaly.started at row %d (+%d), value %.2f, score %.3f, band %.2f-%.2f holds %d of %d normal values (%.1f%%); body %q",
			sp.first, sp.last, i, i-sp.first, rows[i].Value, score, lo, hi, in, len(normal), 100*cover, e.body)
		assert.GreaterOrEqual(t, cover, 0.95, "band %.2f-%.2f of the spike at row %d holds too few normal values", lo, hi, sp.first)
	}

	endedIn := map[int]event{}
	for _, e := range ended {
		i, ok := rowAt[e.ts]
		if !ok {
			continue
		}
		k := spikeOf(i)
		if !assert.GreaterOrEqual(t, k, 0, "anomaly.ended at row %d, before any spike", i) {
			continue
		}
		sp := spikes[k]
		assert.Greater(t, i, sp.last, "anomaly.ended at row %d, inside the spike at rows %d-%d", i, sp.first, sp.last)
		_, dup := endedIn[k]
		assert.False(t, dup, "two anomaly.ended events for the spike at rows %d-%d", sp.first, sp.last)
		endedIn[k] = e
		assert.Equal(t, plog.SeverityNumberInfo, e.severity, "anomaly.ended severity number")
		assert.Equal(t, "INFO", e.severityTxt, "anomaly.ended severity text")
		if s, ok := startedIn[k]; ok {
			assert.Equal(t, s.attrs["anomaly.incident.id"], e.attrs["anomaly.incident.id"], "started and ended of the spike at row %d share the incident id", sp.first)
		}
		d, _ := e.float("anomaly.incident.duration")
		t.Logf("spike rows %d-%d: anomaly.ended at row %d (+%d after its last row), duration %.0fs; body %q",
			sp.first, sp.last, i, i-sp.last, d, e.body)
	}
	for k, sp := range spikes {
		_, s := startedIn[k]
		_, e := endedIn[k]
		assert.True(t, s && e, "spike at rows %d-%d: started %v, ended %v", sp.first, sp.last, s, e)
	}
}

// waitStable waits until file exists and its size has not changed for
// quiet, or until limit has passed.
func waitStable(t *testing.T, file string, quiet, limit time.Duration) {
	deadline := time.Now().Add(limit)
	size, since := int64(-1), time.Now()
	for time.Now().Before(deadline) {
		var n int64 = -1
		if st, err := os.Stat(file); err == nil {
			n = st.Size()
		}
		if n != size {
			size, since = n, time.Now()
		} else if n >= 0 && time.Since(since) >= quiet {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%s still changing (or absent) after %s", file, limit)
}

// readEvents parses the file exporter's OTLP/JSON lines of logs.
func readEvents(t *testing.T, file string) []event {
	f, err := os.Open(file)
	require.NoError(t, err, "the events file")
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var um plog.JSONUnmarshaler
	var out []event
	for line := 1; sc.Scan(); line++ {
		if len(strings.TrimSpace(sc.Text())) == 0 {
			continue
		}
		ld, err := um.UnmarshalLogs(sc.Bytes())
		require.NoError(t, err, "line %d of the events file", line)
		for _, rl := range ld.ResourceLogs().All() {
			svc := ""
			if v, ok := rl.Resource().Attributes().Get("service.name"); ok {
				svc = v.AsString()
			}
			for _, sl := range rl.ScopeLogs().All() {
				for _, lr := range sl.LogRecords().All() {
					out = append(out, event{
						name:        lr.EventName(),
						ts:          int64(lr.Timestamp()),
						severity:    lr.SeverityNumber(),
						severityTxt: lr.SeverityText(),
						body:        lr.Body().AsString(),
						serviceName: svc,
						attrs:       lr.Attributes().AsRaw(),
					})
				}
			}
		}
	}
	require.NoError(t, sc.Err())
	return out
}

// TestExamplesValidate checks every examples/*.yaml with the distribution's
// validate command; a file with only the processor's settings is checked
// under processors: iforest: of a minimal configuration.
func TestExamplesValidate(t *testing.T) {
	bin := distBinary(t)
	files, err := filepath.Glob(filepath.Join(repoRoot, "examples", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			dir := t.TempDir() // relative output paths in the examples stay out of the repository
			cfg := f
			if isProcessorSettings(t, f) {
				cfg = processorSettingsConfig(t, f, dir)
			}
			cmd := exec.Command(bin, "validate", "--config", cfg)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s validate --config %s:\n%s", bin, f, out)
		})
	}
}
