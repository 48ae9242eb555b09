package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otel-iforest/iforest/internal/csvrow"
	"github.com/otel-iforest/iforest/internal/scenario"
	iforestprocessor "github.com/otel-iforest/iforest/processor"
)

// seedExample is the multivariate example the criteria below are about.
var seedExample = filepath.Join("..", "..", "examples", "seed-cpu-memory.yaml")

// seedCPUMemFile is the seed's two-metric file, next to the repository.
var seedCPUMemFile = filepath.Join("..", "..", "..", "shared", "data", "seed", "seed_cpu_mem.csv")

// seedCPUMemCSV renders generated rows in the layout of seed_cpu_mem.csv
// (without the scikit-learn columns).
func seedCPUMemCSV(rows []scenario.Row2) string {
	var b strings.Builder
	b.WriteString("timestamp,cpu_usage,memory_usage,cpu_label,mem_label,injected_label\n")
	flag := func(v bool) int {
		if v {
			return 1
		}
		return 0
	}
	for _, r := range rows {
		fmt.Fprintf(&b, "%s,%s,%s,%d,%d,%d\n", r.Time.Format(csvrow.TimeLayout),
			strconv.FormatFloat(r.CPU, 'g', -1, 64), strconv.FormatFloat(r.Mem, 'g', -1, 64),
			flag(r.CPUHit), flag(r.MemHit), flag(r.CPUHit || r.MemHit))
	}
	return b.String()
}

// cpuMemLabels reads which metric each row of a seed_cpu_mem.csv-style file
// disturbed.
func cpuMemLabels(t testing.TB, data []byte) (cpu, mem []bool) {
	recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	require.NoError(t, err)
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	for _, k := range []string{"cpu_label", "mem_label"} {
		_, ok := col[k]
		require.True(t, ok, "no %s column", k)
	}
	for _, r := range recs[1:] {
		cpu = append(cpu, r[col["cpu_label"]] == "1")
		mem = append(mem, r[col["mem_label"]] == "1")
	}
	return cpu, mem
}

// seedResult is how one model did on the seed's two-metric scenario.
type seedResult struct {
	Spikes, SpikesFlagged int // runs of injected rows; those with a flagged row
	Injected, TP          int // injected rows; flagged ones
	Normal, FP            int // normal rows; flagged ones
	RightTop              int // flagged injected rows whose top feature is the disturbed metric
}

func (r seedResult) topShare() float64 {
	if r.TP == 0 {
		return 0
	}
	return float64(r.RightTop) / float64(r.TP)
}

func (r seedResult) String() string {
	return fmt.Sprintf("spikes flagged %d/%d, injected rows flagged %d/%d, normal rows flagged %d/%d, top feature right %d/%d (%.0f%%)",
		r.SpikesFlagged, r.Spikes, r.TP, r.Injected, r.FP, r.Normal, r.RightTop, r.TP, 100*r.topShare())
}

// judgeSeed scores model's verdicts in tab against the labels. A spike is
// a run of consecutive injected rows.
func judgeSeed(t testing.TB, tab *replayTable, model string, cpu, mem []bool) seedResult {
	k := tab.model(model)
	require.GreaterOrEqual(t, k, 0, "model %q not in the output", model)
	require.Len(t, tab.Rows, len(cpu))
	var r seedResult
	spikeFlagged := false
	for i, row := range tab.Rows {
		v := row.Models[k]
		hit := cpu[i] || mem[i]
		if !hit {
			r.Normal++
			if v.Detected {
				r.FP++
			}
			continue
		}
		if i == 0 || !cpu[i-1] && !mem[i-1] {
			r.Spikes++
			spikeFlagged = false
		}
		r.Injected++
		if !v.Detected {
			continue
		}
		if !spikeFlagged {
			spikeFlagged = true
			r.SpikesFlagged++
		}
		r.TP++
		want := "cpu_usage"
		if mem[i] && !cpu[i] {
			want = "memory_usage"
		}
		if v.TopFeature == want {
			r.RightTop++
		}
	}
	return r
}

func replayString(t testing.TB, cfg *iforestprocessor.Config, data string, cols ...string) *replayTable {
	tab, err := replayCSV(context.Background(), cfg, strings.NewReader(data), replayOptions{Columns: cols})
	require.NoError(t, err)
	return tab
}

func TestReplayGenerated(t *testing.T) {
	cfg, err := loadProcessorConfig(seedExample)
	require.NoError(t, err)
	rows := scenario.SeedCPUMem(7)[:200]
	data := seedCPUMemCSV(rows)

	// All columns but the timestamp are replayed; with univariate off only
	// the model scores.
	tab := replayString(t, cfg, data)
	assert.Equal(t, []string{"machine"}, tab.Models)
	assert.Empty(t, tab.Univariate)
	require.Len(t, tab.Rows, len(rows))
	warm := cfg.Models[0].Warmup
	if warm == 0 {
		warm = cfg.Warmup
	}
	for i, r := range tab.Rows {
		assert.Equal(t, rows[i].Time, r.Time)
		assert.Equal(t, i >= warm, r.Models[0].Scored, "row %d: scored after warm-up", i)
	}
	// The CPU spike at row 87 is found and blamed on the CPU.
	assert.True(t, tab.Rows[87].Models[0].Detected)
	assert.Equal(t, "cpu_usage", tab.Rows[87].Models[0].TopFeature)

	// The same run with univariate on: the label columns are scored on
	// their own, the model's columns are not, and the model's verdicts do
	// not change.
	uni := *cfg
	uni.Univariate = true
	both := replayString(t, &uni, data)
	assert.Equal(t, []string{"cpu_label", "mem_label", "injected_label"}, both.Univariate)
	for i := range tab.Rows {
		assert.Equal(t, tab.Rows[i].Models, both.Rows[i].Models, "row %d", i)
	}
	assert.True(t, both.Rows[150].Columns[0].Scored)

	// Explicit columns, and a metrics selection: cpu_label only.
	uni.Metrics = iforestprocessor.MetricSelection{Exclude: []string{"mem_.*"}}
	sel := replayString(t, &uni, data, "memory_usage", "cpu_usage", "mem_label", "cpu_label")
	assert.Equal(t, []string{"cpu_label"}, sel.Univariate)

	// The output file.
	var buf bytes.Buffer
	require.NoError(t, both.writeCSV(&buf))
	recs, err := csv.NewReader(&buf).ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, len(rows)+1)
	assert.Equal(t, []string{"timestamp", "machine.score", "machine.detected", "machine.top_feature",
		"cpu_label.score", "cpu_label.detected", "mem_label.score", "mem_label.detected",
		"injected_label.score", "injected_label.detected"}, recs[0])
	assert.Equal(t, []string{"2024-01-01 00:00:00", "", "", "", "", "", "", "", "", ""}, recs[1])
	r88 := recs[88]
	assert.Equal(t, "2024-01-01 01:27:00", r88[0])
	score, err := strconv.ParseFloat(r88[1], 64)
	require.NoError(t, err)
	assert.Equal(t, both.Rows[87].Models[0].Score, score, "scores are written exactly")
	assert.Equal(t, []string{"true", "cpu_usage"}, r88[2:4])
	assert.Equal(t, "false", recs[150][2])
	assert.Empty(t, recs[150][3], "top_feature only on flagged rows")
}

func TestReplayCommand(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.csv")
	require.NoError(t, os.WriteFile(in, []byte(seedCPUMemCSV(scenario.SeedCPUMem(3)[:120])), 0o644))
	out := filepath.Join(dir, "out.csv")
	require.NoError(t, runReplay([]string{"--config", seedExample, "--csv", in, "--out", out, "--columns", "cpu_usage, memory_usage"}))
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	require.Len(t, lines, 121)
	assert.Equal(t, "timestamp,machine.score,machine.detected,machine.top_feature", lines[0])

	// Without a config: the processor's defaults score every column.
	require.NoError(t, runReplay([]string{"--csv", in, "--out", out}))
	b, err = os.ReadFile(out)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(b), "timestamp,cpu_usage.score,cpu_usage.detected,memory_usage.score,memory_usage.detected,cpu_label.score,"), "%.200s", b)

	for _, args := range [][]string{
		{"--csv", in},
		{"--out", out},
		{"--csv", in, "--out", out, "extra"},
		{"--csv", in, "--out", out, "--columns", " , "},
	} {
		err := runReplay(args)
		var ue usageError
		assert.ErrorAs(t, err, &ue, "%q", args)
	}
	assert.ErrorContains(t, runReplay([]string{"--csv", in, "--out", out, "--columns", "nope"}), `no "nope" column`)
	assert.ErrorContains(t, runReplay([]string{"--csv", in, "--out", out, "--columns", "timestamp"}), "is the timestamp column")
}

func TestReplayBadInput(t *testing.T) {
	cfg, err := loadProcessorConfig("")
	require.NoError(t, err)
	for name, tc := range map[string]struct{ data, want string }{
		"empty":          {"", "no header"},
		"no timestamp":   {"time,a\n2024-01-01 00:00:00,1\n", `no "timestamp" column`},
		"bad timestamp":  {"timestamp,a\nyesterday,1\n", "line 2: bad timestamp"},
		"short row":      {"timestamp,a,b\n2024-01-01 00:00:00,1\n", "line 2: 2 fields"},
		"duplicate":      {"timestamp,a,a\n", "appears twice"},
		"only timestamp": {"timestamp\n", "no value columns"},
	} {
		_, err := replayCSV(context.Background(), cfg, strings.NewReader(tc.data), replayOptions{})
		assert.ErrorContains(t, err, tc.want, name)
	}
	// Empty and non-numeric cells make no datapoint; a row without any
	// still gets its line, with empty cells.
	tab := replayString(t, cfg, "timestamp,a\n2024-01-01 00:00:00,\n2024-01-01T00:01:00Z,x\n2024-01-01 00:02:00,1\n")
	require.Len(t, tab.Rows, 3)
	assert.Equal(t, "2024-01-01T00:01:00Z", tab.Rows[1].Timestamp)
	assert.Equal(t, []string{"a"}, tab.Univariate)
	assert.False(t, tab.Rows[2].Columns[0].Scored, "warm-up")
}

// seedCriteria checks the acceptance criteria for the example on
// the seed's two-metric scenario: every spike flagged, at most 3 of its
// injected rows missed, at most 3 normal rows flagged, and the top feature
// names the disturbed metric on at least 90% of the flagged injected rows.
func seedCriteria(t *testing.T, name string, data []byte) seedResult {
	cfg, err := loadProcessorConfig(seedExample)
	require.NoError(t, err)
	tab := replayString(t, cfg, string(data), "cpu_usage", "memory_usage")
	cpu, mem := cpuMemLabels(t, data)
	r := judgeSeed(t, tab, "machine", cpu, mem)
	t.Logf("%s: %v", name, r)
	assert.Equal(t, 6, r.Spikes, "%s: the scenario has 6 spikes", name)
	assert.Equal(t, 30, r.Injected, "%s: and 30 injected rows", name)
	assert.Equal(t, r.Spikes, r.SpikesFlagged, "%s: spikes with a flagged row", name)
	assert.GreaterOrEqual(t, r.TP, r.Injected-3, "%s: injected rows flagged", name)
	assert.LessOrEqual(t, r.FP, 3, "%s: normal rows flagged", name)
	assert.GreaterOrEqual(t, r.topShare(), 0.9, "%s: top feature names the disturbed metric", name)
	return r
}

// TestSeedCPUMemoryExampleFile runs examples/seed-cpu-memory.yaml on the
// seed's own file, when the shared data folder is next to the repository.
// It is as quick as the generated copies (1,440 rows), so it runs with
// -short too, that is in make test.
func TestSeedCPUMemoryExampleFile(t *testing.T) {
	data, err := os.ReadFile(seedCPUMemFile)
	if os.IsNotExist(err) {
		t.Skipf("%s not present", seedCPUMemFile)
	}
	require.NoError(t, err)
	seedCriteria(t, "seed_cpu_mem.csv", data)
}

// TestSeedCPUMemoryExampleGenerated does the same on generated copies of
// the scenario.
func TestSeedCPUMemoryExampleGenerated(t *testing.T) {
	for seed := uint64(1); seed <= 10; seed++ {
		seedCriteria(t, fmt.Sprintf("seed %d", seed), []byte(seedCPUMemCSV(scenario.SeedCPUMem(seed))))
	}
}
