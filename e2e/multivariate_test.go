//go:build e2e

package e2e

import (
	"encoding/csv"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/otel-iforest/iforest/internal/scenario"
)

// The multivariate example: a model "machine" joining the metrics
// cpu_usage and memory_usage, with only the processor's settings in the file.
const (
	seedExample = "examples/seed-cpu-memory.yaml"
	seedModel   = "machine"
)

var seedMetrics = []string{"cpu_usage", "memory_usage"}

var (
	evalOnce sync.Once
	evalBin  string
	evalErr  error
)

// iforestEval builds cmd/iforest-eval next to iforest-replay (TestMain's
// directory, removed at the end) the first time it is asked for.
func iforestEval(t *testing.T) string {
	evalOnce.Do(func() {
		evalBin = filepath.Join(filepath.Dir(replayBin), "iforest-eval")
		cmd := exec.Command("go", "build", "-o", evalBin, "./cmd/iforest-eval")
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			evalErr = fmt.Errorf("building iforest-eval: %v\n%s", err, out)
		}
	})
	require.NoError(t, evalErr)
	return evalBin
}

// indentedProcessorYAML is a processor-settings-only file indented to sit
// under `processors: iforest:` in startCollector's config.
func indentedProcessorYAML(t *testing.T, file string) string {
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	var sb strings.Builder
	for line := range strings.SplitSeq(strings.TrimRight(string(b), "\n"), "\n") {
		sb.WriteString("\n")
		if strings.TrimSpace(line) != "" {
			sb.WriteString("    " + line)
		}
	}
	return sb.String()
}

// isProcessorSettings reports whether an example file holds only the iforest
// processor's settings (like examples/seed-cpu-memory.yaml, made for
// `iforest-eval replay --config`) rather than a collector configuration: it
// has no top-level service key.
func isProcessorSettings(t *testing.T, file string) bool {
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	return !regexp.MustCompile(`(?m)^service:`).Match(b)
}

// processorSettingsConfig writes, into dir, a collector configuration with
// the settings of file under processors: iforest: in an otlp -> iforest ->
// nop pipeline, and returns its path.
func processorSettingsConfig(t *testing.T, file, dir string) string {
	cfg := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc:
processors:
  iforest:%s
exporters:
  nop:
service:
  pipelines:
    metrics:
      receivers: [otlp]
      processors: [iforest]
      exporters: [nop]
`, indentedProcessorYAML(t, file))
	path := filepath.Join(dir, "iforest-"+filepath.Base(file))
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	return path
}

// modelVerdict is one row's verdict of a model, or its absence.
type modelVerdict struct {
	scored     bool
	score      float64
	detected   bool
	topFeature string
}

func (v modelVerdict) String() string {
	if !v.scored {
		return "no verdict"
	}
	return fmt.Sprintf("score %.12f detected %v top %q", v.score, v.detected, v.topFeature)
}

// offlineVerdicts runs `iforest-eval replay` with the example on csvFile
// and returns the model's verdict per row time (unix nanoseconds).
func offlineVerdicts(t *testing.T, csvFile string) (map[int64]modelVerdict, []int64) {
	out := filepath.Join(t.TempDir(), "verdicts.csv")
	cmd := exec.Command(iforestEval(t), "replay", "--config", filepath.Join(repoRoot, seedExample),
		"--csv", csvFile, "--out", out, "--columns", strings.Join(seedMetrics, ","))
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "iforest-eval replay: %s", b)
	f, err := os.Open(out)
	require.NoError(t, err)
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	require.Equal(t, []string{"timestamp", seedModel + ".score", seedModel + ".detected", seedModel + ".top_feature"}, recs[0])
	vs := map[int64]modelVerdict{}
	var times []int64
	for i, r := range recs[1:] {
		ts, err := time.Parse("2006-01-02 15:04:05", r[0])
		require.NoError(t, err, "row %d", i)
		var v modelVerdict
		if r[1] != "" {
			v.scored = true
			v.score, err = strconv.ParseFloat(r[1], 64)
			require.NoError(t, err, "row %d", i)
			v.detected = r[2] == "true"
			v.topFeature = r[3]
		}
		vs[ts.UnixNano()] = v
		times = append(times, ts.UnixNano())
	}
	return vs, times
}

// exportedVerdicts reads the model verdicts off the datapoints the
// collector exported, waiting until want datapoints of the model's metrics
// have arrived. Both datapoints of a row must carry the same verdict.
func exportedVerdicts(t *testing.T, file string, want int) map[int64]modelVerdict {
	deadline := time.Now().Add(60 * time.Second)
	for {
		vs, n := parseModelVerdicts(t, file)
		if n >= want || time.Now().After(deadline) {
			require.Equal(t, want, n, "datapoints out must equal datapoints in")
			return vs
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func parseModelVerdicts(t *testing.T, file string) (map[int64]modelVerdict, int) {
	vs := map[int64]modelVerdict{}
	seen := map[int64]bool{}
	n := 0
	exportedGauges(t, file, func(m pmetric.Metric, dp pmetric.NumberDataPoint) {
		n++
		attrs := dp.Attributes()
		var v modelVerdict
		if s, ok := attrs.Get("anomaly.score"); ok {
			v.scored, v.score = true, s.Double()
			mv, _ := attrs.Get("anomaly.model")
			assert.Equal(t, seedModel, mv.AsString(), "%s at %d: scored by the model", m.Name(), dp.Timestamp())
		}
		if d, ok := attrs.Get("anomaly.detected"); ok {
			v.detected = d.Bool()
		}
		if tf, ok := attrs.Get("anomaly.top_feature"); ok {
			v.topFeature = tf.AsString()
		}
		ts := int64(dp.Timestamp())
		if seen[ts] {
			assert.Equal(t, vs[ts], v, "%s at %d: both datapoints of a row carry the model's verdict", m.Name(), ts)
		}
		seen[ts] = true
		vs[ts] = v
	})
	return vs, n
}

// checkMultivariateThroughDistribution replays csvFile (which has the
// columns cpu_usage and memory_usage, every cell a number) through the
// distribution with the example's processor settings and checks the
// verdicts equal those of the offline replay through the processor.
func checkMultivariateThroughDistribution(t *testing.T, csvFile string) {
	want, times := offlineVerdicts(t, csvFile)

	c := startCollector(t, indentedProcessorYAML(t, filepath.Join(repoRoot, seedExample)))
	cols := make([]string, len(seedMetrics))
	for i, m := range seedMetrics {
		cols[i] = m + "=" + m
	}
	out, err := exec.Command(replayBin, "--endpoint", c.endpoint, "--file", csvFile,
		"--columns", strings.Join(cols, ","), "--wait", "30s").CombinedOutput()
	require.NoError(t, err, "iforest-replay: %s", out)
	t.Logf("iforest-replay: %s", strings.TrimSpace(string(out)))
	got := exportedVerdicts(t, c.outFile, len(seedMetrics)*len(times))
	c.stop(t)

	var scored, flagged, mismatches int
	for i, ts := range times {
		w, g := want[ts], got[ts]
		if w.scored {
			scored++
		}
		if w.detected {
			flagged++
		}
		ok := w.scored == g.scored && w.detected == g.detected && w.topFeature == g.topFeature &&
			math.Abs(w.score-g.score) <= 1e-9
		if !ok {
			mismatches++
			if mismatches <= 10 {
				t.Errorf("row %d (%s): offline %v, collector %v", i, time.Unix(0, ts).UTC().Format(time.DateTime), w, g)
			}
		}
	}
	t.Logf("%d rows, %d scored, %d flagged offline; %d rows differ in the collector", len(times), scored, flagged, mismatches)
	assert.Zero(t, mismatches, "rows whose verdict differs")
	assert.Greater(t, flagged, 0, "the model flags the spikes")
}

// TestMultivariateSeedGenerated replays a generated copy of the seed's
// two-metric scenario.
func TestMultivariateSeedGenerated(t *testing.T) {
	rows := scenario.SeedCPUMem(2024)
	file := filepath.Join(t.TempDir(), "seed_cpu_mem.csv")
	var b strings.Builder
	b.WriteString("timestamp,cpu_usage,memory_usage,cpu_label,mem_label\n")
	label := map[bool]string{false: "0", true: "1"}
	for _, r := range rows {
		fmt.Fprintf(&b, "%s,%s,%s,%s,%s\n", r.Time.Format("2006-01-02 15:04:05"),
			strconv.FormatFloat(r.CPU, 'g', -1, 64), strconv.FormatFloat(r.Mem, 'g', -1, 64),
			label[r.CPUHit], label[r.MemHit])
	}
	require.NoError(t, os.WriteFile(file, []byte(b.String()), 0o600))
	checkMultivariateThroughDistribution(t, file)
}

// TestMultivariateSharedSeedFile does the same with the seed's own file,
// when the shared data folder is next to the repository.
func TestMultivariateSharedSeedFile(t *testing.T) {
	file := filepath.Join(repoRoot, "..", "shared", "data", "seed", "seed_cpu_mem.csv")
	if _, err := os.Stat(file); err != nil {
		t.Skip("../shared/data/seed not present")
	}
	checkMultivariateThroughDistribution(t, file)
}
