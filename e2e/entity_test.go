//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// The host scenario of the entity incidents: one host, nine metrics, one
// row a minute. Metrics m0..m7 depart together at row hostSpike, m8 alone
// an hour later.
const (
	hostRows    = 400
	hostMetrics = 9
	hostSpike   = 200
	loneSpike   = hostSpike + 60
	spikeLen    = 5
)

// hostScenarioCSV writes the scenario: each metric noise around 35
// (normal(35, 5) clipped to [20, 50], as the seed scenario), spikes drawn
// from [70, 95].
func hostScenarioCSV(t *testing.T) string {
	rng := rand.New(rand.NewPCG(15, 8))
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	var b strings.Builder
	b.WriteString("timestamp")
	for m := range hostMetrics {
		fmt.Fprintf(&b, ",m%d", m)
	}
	b.WriteString("\n")
	for i := range hostRows {
		b.WriteString(start.Add(time.Duration(i) * time.Minute).Format("2006-01-02 15:04:05"))
		for m := range hostMetrics {
			v := math.Max(20, math.Min(50, 35+5*rng.NormFloat64()))
			inHost := m < 8 && i >= hostSpike && i < hostSpike+spikeLen
			inLone := m == 8 && i >= loneSpike && i < loneSpike+spikeLen
			if inHost || inLone {
				v = 70 + 25*rng.Float64()
			}
			b.WriteString("," + strconv.FormatFloat(v, 'f', 3, 64))
		}
		b.WriteString("\n")
	}
	file := filepath.Join(t.TempDir(), "host.csv")
	require.NoError(t, os.WriteFile(file, []byte(b.String()), 0o600))
	return file
}

// runHost replays the host scenario through a collector whose connector
// has connectorYAML, and returns its events (and the rate file's path,
// with rate).
func runHost(t *testing.T, csvFile, connectorYAML string, rate bool) ([]event, string) {
	var eventsFile, rateFile string
	c := startCollectorWith(t, func(c *collector) string {
		eventsFile = filepath.Join(c.dir, "events.jsonl")
		if rate {
			rateFile = filepath.Join(c.dir, "rate.jsonl")
		}
		return eventsPipeline{connector: connectorYAML, rateFile: rateFile}.config(c, eventsFile)
	})
	cols := make([]string, hostMetrics)
	for m := range cols {
		cols[m] = fmt.Sprintf("m%d=host.m%d", m, m)
	}
	out, err := exec.Command(replayBin, "--endpoint", c.endpoint, "--file", csvFile,
		"--columns", strings.Join(cols, ","), "--resource", "host.name=web-1", "--wait", "30s").CombinedOutput()
	require.NoError(t, err, "iforest-replay: %s", out)
	t.Logf("iforest-replay: %s", strings.TrimSpace(string(out)))
	readExported(t, c.outFile, hostRows) // every row has passed (datapoints keyed by time)
	waitStable(t, eventsFile, 3*time.Second, 30*time.Second)
	if rate {
		waitStable(t, rateFile, time.Second, 10*time.Second)
	}
	c.stop(t)
	return readEvents(t, eventsFile), rateFile
}

func byName(events []event) map[string][]event {
	m := map[string][]event{}
	for _, e := range events {
		m[e.name] = append(m[e.name], e)
	}
	return m
}

// TestEntityIncidents: with group_by [host.name], the eight metrics that
// depart together are one incident and the one an hour later another;
// without it, nine of each. The anomaly rate shows the host's share of
// flagged series per minute.
func TestEntityIncidents(t *testing.T) {
	csvFile := hostScenarioCSV(t)

	events, rateFile := runHost(t, csvFile, "    group_by: [host.name]", true)
	got := byName(events)
	for _, e := range events {
		t.Logf("%s at %s: %s", e.name, time.Unix(0, e.ts).UTC().Format(time.TimeOnly), e.body)
	}
	require.Len(t, got["anomaly.started"], 2, "anomaly.started events")
	require.Len(t, got["anomaly.ended"], 2, "anomaly.ended events")
	assert.Len(t, events, 4, "nothing else")
	var counts []int64
	for _, e := range got["anomaly.started"] {
		n, _ := e.attrs["anomaly.series.count"].(int64)
		counts = append(counts, n)
		assert.Contains(t, e.body, "host.name=web-1: ")
		list, _ := e.attrs["anomaly.series"].([]any)
		assert.Len(t, list, int(n), "every series listed")
	}
	assert.Equal(t, []int64{8, 1}, counts, "anomaly.series.count of the two started events")
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	rowOf := func(e event) int { return int(time.Unix(0, e.ts).Sub(start) / time.Minute) }
	assert.InDelta(t, hostSpike, rowOf(got["anomaly.started"][0]), 1, "the host's incident starts at its spike")
	assert.InDelta(t, loneSpike, rowOf(got["anomaly.started"][1]), 1, "the lone metric's an hour later")
	for i, e := range got["anomaly.ended"] {
		assert.Equal(t, got["anomaly.started"][i].attrs["anomaly.incident.id"], e.attrs["anomaly.incident.id"])
		assert.Equal(t, counts[i], e.attrs["anomaly.series.count"])
	}

	rates := readRates(t, rateFile)
	t.Logf("%d anomaly.rate points; at the host's spike %.3f, at the lone spike %.3f", len(rates), rates[hostSpike], rates[loneSpike])
	assert.Greater(t, len(rates), hostRows-50, "one rate per scored minute")
	assert.GreaterOrEqual(t, rates[hostSpike], 7.0/9, "the host's spike: (nearly) 8 of 9 series flagged")
	assert.InDelta(t, 1.0/9, rates[loneSpike], 1e-9, "the lone spike: 1 of 9")
	assert.Zero(t, rates[hostSpike-10], "a quiet minute")

	events, _ = runHost(t, csvFile, "", false)
	got = byName(events)
	assert.Len(t, got["anomaly.started"], 9, "anomaly.started events without group_by")
	assert.Len(t, got["anomaly.ended"], 9, "anomaly.ended events without group_by")
}

// readRates returns the anomaly.rate of host web-1 by row (the minute its
// interval starts).
func readRates(t *testing.T, file string) map[int]float64 {
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	out := map[int]float64{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var um pmetric.JSONUnmarshaler
	for sc.Scan() {
		md, err := um.UnmarshalMetrics(sc.Bytes())
		require.NoError(t, err)
		for _, rm := range md.ResourceMetrics().All() {
			assert.Equal(t, map[string]any{"host.name": "web-1"}, rm.Resource().Attributes().AsRaw())
			for _, sm := range rm.ScopeMetrics().All() {
				for _, m := range sm.Metrics().All() {
					if m.Name() != "anomaly.rate" {
						require.Contains(t, []string{"anomaly.scored", "anomaly.flagged"}, m.Name())
						continue
					}
					for _, dp := range m.Gauge().DataPoints().All() {
						row := int(dp.StartTimestamp().AsTime().Sub(start) / time.Minute)
						_, dup := out[row]
						assert.False(t, dup, "two rates for row %d", row)
						out[row] = dp.DoubleValue()
					}
				}
			}
		}
	}
	require.NoError(t, sc.Err())
	return out
}
