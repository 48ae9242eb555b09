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

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
//   - bytes of our value are overwritten inside the bbolt file, which stays
//     valid (bbolt checksums only its meta pages): the value is rejected;
//   - the whole bbolt file is garbage, so file_storage cannot open it (its
//     `recreate` option only catches bbolt panics): the processor runs
//     without persistence for this run rather than stop the collector.
//
// Either way the collector starts, says once what happened, and detects
// again after a fresh warm-up.
func TestRestartWithCorruptSnapshot(t *testing.T) {
	for _, c := range []struct {
		name, message string
		damage        func(t *testing.T, dir string)
	}{
		{"value damaged", "iforest: the saved models are unreadable; detection starts fresh", func(t *testing.T, dir string) {
			t.Logf("overwrote bytes inside %d copies of the snapshot in the bbolt file", corruptSnapshots(t, dir))
		}},
		{"database unreadable", "iforest: cannot open its storage; detection starts fresh", func(t *testing.T, dir string) {
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
	var iforestLines []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "iforest:") || strings.Contains(l, "storage") && strings.Contains(l, "error") {
			iforestLines = append(iforestLines, l)
		}
	}
	assert.Len(t, iforestLines, 1, "nothing else about the saved state")
	t.Logf("collector said: %s", strings.Join(iforestLines, "\n"))

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

// corruptSnapshots overwrites a stretch in the middle of every copy of the
// processor's snapshot (found by its magic) in the storage directory's
// bbolt files: old copies may linger in freed pages. The value sits in
// contiguous overflow pages, so the change stays inside it.
func corruptSnapshots(t *testing.T, dir string) int {
	magic := []byte("\x89IFPROC\n")
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
			at := off + i + 2000
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
