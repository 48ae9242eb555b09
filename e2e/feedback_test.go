//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otel-iforest/iforest/internal/scenario"
)

// waitForLog waits until the collector's log file holds text.
func waitForLog(t *testing.T, file, text string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(file); err == nil && strings.Contains(string(b), text) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no %q in the collector's log within %s", text, limit)
}

// A series with a repeated, identical excursion: the collector reports the
// first one's incident; an operator writes `verdict: normal` for it into
// the rules file while the collector runs; the later identical excursions
// raise no incident, the one twice as large does.
func TestFeedbackThroughDistribution(t *testing.T) {
	const large = 6
	rows, starts := scenario.Excursions(1, 2000, 200, 250, map[int]float64{large: 2})
	split := starts[1] - 20 // the first excursion and its end are before
	first := writeScenarioCSV(t, rows[:split])
	rest := writeScenarioCSV(t, rows[split:])

	var eventsFile, logFile, rulesFile string
	c := startCollectorWith(t, func(c *collector) string {
		eventsFile = filepath.Join(c.dir, "events.jsonl")
		logFile = filepath.Join(c.dir, "collector.log")
		rulesFile = filepath.Join(c.dir, "rules.yaml")
		require.NoError(t, os.WriteFile(rulesFile, nil, 0o600))
		// The events pipeline with a rules file, and the collector's log in a
		// file too (to see the reload).
		return eventsPipeline{processor: "    rules_file: " + rulesFile, logFile: logFile}.config(c, eventsFile)
	})

	replay(t, c.endpoint, first)
	readExported(t, c.outFile, split)
	waitStable(t, eventsFile, 2*time.Second, 30*time.Second)
	var started []event
	for _, e := range readEvents(t, eventsFile) {
		if e.name == "anomaly.started" {
			started = append(started, e)
		}
	}
	require.Len(t, started, 1, "the first excursion's incident")
	id, ok := started[0].attrs["anomaly.incident.id"].(string)
	require.True(t, ok, "anomaly.incident.id on %v", started[0].attrs)

	// The operator's word, without a restart.
	tmp := rulesFile + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(fmt.Sprintf("feedback:\n  - {incident_id: %s, verdict: normal}\n", id)), 0o600))
	require.NoError(t, os.Rename(tmp, rulesFile))
	waitForLog(t, logFile, "feedback updated", 30*time.Second)

	replay(t, c.endpoint, rest)
	readExported(t, c.outFile, len(rows))
	waitStable(t, eventsFile, 3*time.Second, 30*time.Second)
	c.stop(t)

	rowAt := map[int64]int{}
	for i, r := range rows {
		rowAt[r.Time.UnixNano()] = i
	}
	excursionOf := func(i int) int {
		for k, s := range starts {
			if i >= s && i < s+20 {
				return k
			}
		}
		return -1
	}
	var after []int
	for _, e := range readEvents(t, eventsFile) {
		if e.name != "anomaly.started" {
			continue
		}
		i, ok := rowAt[e.ts]
		require.True(t, ok, "anomaly.started at %s matches no row", time.Unix(0, e.ts).UTC())
		if i >= split {
			after = append(after, excursionOf(i))
		}
	}
	t.Logf("incident %s called normal; anomaly.started after it at excursions %v (of %d; #%d twice as large)", id, after, len(starts), large)
	assert.Equal(t, []int{large}, after, "only the excursion twice as large raises an incident")

	flagged := map[int]int{}
	pts := parseExported(t, c.outFile)
	for i, r := range rows[split:] {
		if p := pts[r.Time.UnixNano()]; p.detected {
			flagged[excursionOf(split+i)]++
		}
	}
	for k := 1; k < len(starts); k++ {
		if k == large {
			assert.Positive(t, flagged[k], "the large excursion is flagged")
		} else {
			assert.Zero(t, flagged[k], "identical excursion %d is not flagged", k)
		}
	}
	assert.Zero(t, flagged[-1], "nothing else is flagged")
}
