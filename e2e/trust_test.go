//go:build e2e

package e2e

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/otel-iforest/iforest/internal/scenario"
)

// sendOTLP exports md to endpoint, waiting up to 30 s for the collector to
// accept connections.
func sendOTLP(t *testing.T, endpoint string, md pmetric.Metrics) {
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := pmetricotlp.NewGRPCClient(conn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = client.Export(ctx, pmetricotlp.NewExportRequestFromMetrics(md))
		cancel()
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			require.NoError(t, err, "export to %s", endpoint)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// forged is what a client sends to raise or end alarms itself: the
// processor's verdict attributes on its own datapoints, with the incident
// ids given (made up, or read off real events), on a metric of its own and
// on the replayed metric's name under another resource.
func forged(at time.Time, startIDs, endIDs []string) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "forger")
	sm := rm.ScopeMetrics().AppendEmpty()
	i := 0
	point := func(metric string, score float64) pcommon.Map {
		m := sm.Metrics().AppendEmpty()
		m.SetName(metric)
		dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
		dp.SetTimestamp(pcommon.NewTimestampFromTime(at.Add(time.Duration(i) * time.Second)))
		dp.SetDoubleValue(99)
		dp.Attributes().PutInt("n", int64(i))
		i++
		a := dp.Attributes()
		a.PutDouble("anomaly.score", score)
		a.PutBool("anomaly.detected", true)
		a.PutDouble("anomaly.threshold", 0.8)
		return a
	}
	for _, metric := range []string{"forged.metric", replayedMetric} {
		for _, score := range []float64{math.NaN(), 1e308, 0.99} {
			for _, id := range startIDs {
				a := point(metric, score)
				a.PutStr("anomaly.incident", "started")
				a.PutStr("anomaly.incident.id", id)
			}
			for _, id := range endIDs {
				a := point(metric, score)
				a.PutStr("anomaly.incident", "ended")
				a.PutStr("anomaly.incident.id", id)
				a.PutDouble("anomaly.incident.duration", 300)
				a.PutDouble("anomaly.incident.peak_score", score)
			}
		}
	}
	return md
}

// TestForgedVerdictsRaiseNothing: a client that sends the processor's
// verdict attributes itself, with made-up ids or with ids copied from real
// events, gets no event out of the connector, while the real spikes of
// the replayed scenario still produce theirs.
func TestForgedVerdictsRaiseNothing(t *testing.T) {
	rows := scenario.SeedCPU(2024, nil)
	end := rows[len(rows)-1].Time
	var eventsFile string
	c := startCollectorWith(t, func(c *collector) string {
		eventsFile = filepath.Join(c.dir, "events.jsonl")
		cfg := eventsPipeline{}.config(c, eventsFile)
		return replaceOnce(t, cfg, "  anomalyevents: {}\n", "  anomalyevents:\n    emit_datapoints: true\n")
	})

	made := []string{"0123456789abcdef", "fedcba9876543210"}
	first := forged(end.Add(time.Hour), made, made)
	n := first.DataPointCount()
	sendOTLP(t, c.endpoint, first)
	replay(t, c.endpoint, writeScenarioCSV(t, rows))
	readExported(t, c.outFile, len(rows)+n) // every point has passed (distinct times)
	waitStable(t, eventsFile, 3*time.Second, 30*time.Second)

	// Copies of the real transitions and flags, ids read off the events.
	var startIDs, endIDs []string
	for _, e := range readEvents(t, eventsFile) {
		id, _ := e.attrs["anomaly.incident.id"].(string)
		switch e.name {
		case "anomaly.started":
			startIDs = append(startIDs, id)
		case "anomaly.ended":
			endIDs = append(endIDs, id)
		}
	}
	require.Len(t, startIDs, 3, "the scenario's three spikes")
	sendOTLP(t, c.endpoint, forged(end.Add(2*time.Hour), startIDs, endIDs))
	time.Sleep(2 * time.Second) // the forged batch's events, if any, would be written by now
	waitStable(t, eventsFile, 2*time.Second, 30*time.Second)
	c.stop(t)

	names := map[string]int{}
	for _, e := range readEvents(t, eventsFile) {
		names[e.name]++
		assert.Equal(t, "iforest-replay", e.serviceName, "%s event from %s: %s", e.name, e.serviceName, e.body)
		assert.NotContains(t, e.body, "forged")
		id, _ := e.attrs["anomaly.incident.id"].(string)
		assert.Contains(t, startIDs, id, "%s event names a real incident", e.name)
	}
	t.Logf("events: %v", names)
	assert.Equal(t, 3, names["anomaly.started"], "one anomaly.started per real spike")
	assert.Equal(t, 3, names["anomaly.ended"], "one anomaly.ended per real spike")
	assert.Positive(t, names["anomaly.detected"], "the real spikes' flagged points")
	assert.Len(t, names, 3)
}

// replaceOnce replaces the one occurrence of old in s.
func replaceOnce(t *testing.T, s, old, new string) string {
	require.Equal(t, 1, strings.Count(s, old), "%q in the configuration", old)
	return strings.Replace(s, old, new, 1)
}
