package anomalyeventsconnector

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/golden"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/plogtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/otel-iforest/iforest/connector/internal/metadata"
	"github.com/otel-iforest/iforest/connector/internal/metadatatest"
)

// dp describes one scored gauge datapoint of a test batch.
type dp struct {
	metric string
	attrs  map[string]any
	score  float64
	// The incident: opened (start) or closed (end) at this point, or open
	// (in); 0 for none.
	start, end, in uint64
	peak           float64
}

// host returns a batch of one resource (host.name = name, unless empty)
// whose datapoints are at time at.
func host(name string, at time.Time, dps ...dp) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	if name != "" {
		rm.Resource().Attributes().PutStr("host.name", name)
	}
	rm.Resource().Attributes().PutStr("service.name", "shop")
	sm := rm.ScopeMetrics().AppendEmpty()
	for _, d := range dps {
		p := gaugePoint(sm, d.metric, 1)
		p.SetTimestamp(pcommon.NewTimestampFromTime(at))
		a := p.Attributes()
		for k, v := range d.attrs {
			_ = a.PutEmpty(k).FromRaw(v)
		}
		if d.score >= 0.8 {
			flagged(a, d.score, 0.8)
		} else {
			normal(a, d.score)
		}
		switch {
		case d.start != 0:
			started(a, fmt.Sprintf("%016x", d.start))
		case d.end != 0:
			ended(a, fmt.Sprintf("%016x", d.end), 0, d.peak)
		case d.in != 0:
			a.PutStr("anomaly.incident.id", fmt.Sprintf("%016x", d.in))
		}
	}
	return md
}

func quiet(metric string) dp { return dp{metric: metric, score: 0.4} }

// merge appends the resources of later batches to the first.
func merge(mds ...pmetric.Metrics) pmetric.Metrics {
	out := pmetric.NewMetrics()
	for _, md := range mds {
		md.ResourceMetrics().MoveAndAppendTo(out.ResourceMetrics())
	}
	return out
}

// groupedScenario is a host whose four series depart within a minute, one
// of them later alone, next to a resource without host.name (per-series
// events). One batch per minute.
func groupedScenario() []pmetric.Metrics {
	m := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Minute) }
	cpu := map[string]any{"cpu": "cpu0"}
	return []pmetric.Metrics{
		merge(
			host("web-1", m(0),
				dp{metric: "system.cpu.utilization", attrs: cpu, score: 0.91, start: 0xa1},
				dp{metric: "system.memory.utilization", score: 0.85, start: 0xa2},
				dp{metric: "system.disk.io", attrs: map[string]any{"device": "sda"}, score: 0.95, start: 0xa3},
				quiet("system.network.io")),
			host("", m(0), dp{metric: "queue.depth", score: 0.88, start: 0xb1})),
		// 30 s later another series of web-1 departs: it joins.
		host("web-1", m(0).Add(30*time.Second), dp{metric: "system.network.io", score: 0.82, start: 0xa4}),
		// A minute after the first start: still within the window.
		merge(
			host("web-1", m(1),
				dp{metric: "system.cpu.utilization", attrs: cpu, score: 0.93, in: 0xa1},
				dp{metric: "system.memory.utilization", score: 0.5, in: 0xa2},
				dp{metric: "system.disk.io", attrs: map[string]any{"device": "sda"}, score: 0.5, in: 0xa3},
				dp{metric: "system.network.io", score: 0.5, in: 0xa4}),
			host("", m(1), dp{metric: "queue.depth", score: 0.4, end: 0xb1, peak: 0.88})),
		// The window is over: one started event for the four.
		host("web-1", m(2),
			dp{metric: "system.cpu.utilization", attrs: cpu, score: 0.4, end: 0xa1, peak: 0.93},
			dp{metric: "system.memory.utilization", score: 0.4, end: 0xa2, peak: 0.85},
			dp{metric: "system.disk.io", attrs: map[string]any{"device": "sda"}, score: 0.4, in: 0xa3},
			dp{metric: "system.network.io", score: 0.4, in: 0xa4}),
		host("web-1", m(3),
			dp{metric: "system.disk.io", attrs: map[string]any{"device": "sda"}, score: 0.4, end: 0xa3, peak: 0.95},
			quiet("system.network.io")),
		// The last member ends; memory departs again, beyond the window of
		// the first incident: a new one.
		host("web-1", m(4),
			dp{metric: "system.network.io", score: 0.4, end: 0xa4, peak: 0.82},
			dp{metric: "system.memory.utilization", score: 0.97, start: 0xa5}),
		host("web-1", m(5), dp{metric: "system.memory.utilization", score: 0.4, end: 0xa5, peak: 0.97}),
		host("web-1", m(6), quiet("system.memory.utilization")),
	}
}

var groupedIDs = []uint64{0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xb1}

func groupConfig() *Config {
	cfg := defaultConfig()
	cfg.GroupBy = []string{"host.name"}
	return cfg
}

// all joins the logs of every call to the sink, in order.
func all(sink *consumertest.LogsSink) plog.Logs {
	out := plog.NewLogs()
	for _, ld := range sink.AllLogs() {
		for _, rl := range ld.ResourceLogs().All() {
			rl.CopyTo(out.ResourceLogs().AppendEmpty())
		}
	}
	return out
}

func TestGoldenGrouped(t *testing.T) {
	dir := filepath.Join("testdata", "golden", "grouped")
	sink := new(consumertest.LogsSink)
	c := newConnectorTo(t, groupConfig(), connectortest.NewNopSettings(metadata.Type), sink, issued(nil, groupedIDs))
	for i, md := range groupedScenario() {
		file := filepath.Join(dir, fmt.Sprintf("input_%d.yaml", i+1))
		if updateGolden {
			require.NoError(t, golden.WriteMetrics(t, file, md, golden.SkipMetricTimestampNormalization()))
		}
		in, err := golden.ReadMetrics(file)
		require.NoError(t, err)
		require.NoError(t, c.ConsumeMetrics(context.Background(), in))
	}
	got := all(sink)
	expectedFile := filepath.Join(dir, "expected.yaml")
	if updateGolden {
		require.NoError(t, golden.WriteLogs(t, expectedFile, got))
	}
	want, err := golden.ReadLogs(expectedFile)
	require.NoError(t, err)
	require.NoError(t, plogtest.CompareLogs(want, got, plogtest.IgnoreResourceLogsOrder()))
	assert.Equal(t, eventNames(want), eventNames(got))
}

// The grouped scenario, spelled out.
func TestGroupedEvents(t *testing.T) {
	sink := new(consumertest.LogsSink)
	c := newConnectorTo(t, groupConfig(), connectortest.NewNopSettings(metadata.Type), sink, issued(nil, groupedIDs))
	var calls []int // records per batch
	for _, md := range groupedScenario() {
		n := sink.LogRecordCount()
		require.NoError(t, c.ConsumeMetrics(context.Background(), md))
		calls = append(calls, sink.LogRecordCount()-n)
	}
	// queue.depth (no host.name) starts and ends per series; web-1's four
	// are one started event once the window is over (batch 4), one ended
	// with the last (batch 6); memory's second departure is its own.
	assert.Equal(t, []int{1, 0, 1, 1, 0, 1, 0, 2}, calls)
	ld := all(sink)
	assert.Equal(t, []string{
		"anomaly.started", "anomaly.ended", // queue.depth
		"anomaly.started", "anomaly.ended", // web-1, four series
		"anomaly.started", "anomaly.ended", // web-1, memory again
	}, eventNames(ld))
	recs := records(ld)

	s := recs[2]
	assert.Equal(t, "host.name=web-1: 4 series anomalous together (top score 0.95): system.disk.io{device=sda} 0.95, system.cpu.utilization{cpu=cpu0} 0.91, system.memory.utilization 0.85 and 1 more", s.Body().Str())
	assert.Equal(t, pcommon.NewTimestampFromTime(t0), s.Timestamp(), "the first member's start")
	assert.Equal(t, plog.SeverityNumberWarn, s.SeverityNumber())
	attrs := s.Attributes().AsRaw()
	assert.Equal(t, int64(4), attrs["anomaly.series.count"])
	assert.Equal(t, 0.95, attrs["anomaly.score"])
	assert.Equal(t, "00000000000000a1", attrs["anomaly.incident.id"], "named after the first member")
	assert.Equal(t, false, attrs["anomaly.series.truncated"])
	assert.Equal(t, []any{
		map[string]any{"metric.name": "system.disk.io", "attributes": map[string]any{"device": "sda"}, "anomaly.score": 0.95, "anomaly.incident.id": "00000000000000a3"},
		map[string]any{"metric.name": "system.cpu.utilization", "attributes": map[string]any{"cpu": "cpu0"}, "anomaly.score": 0.91, "anomaly.incident.id": "00000000000000a1"},
		map[string]any{"metric.name": "system.memory.utilization", "attributes": map[string]any{}, "anomaly.score": 0.85, "anomaly.incident.id": "00000000000000a2"},
		map[string]any{"metric.name": "system.network.io", "attributes": map[string]any{}, "anomaly.score": 0.82, "anomaly.incident.id": "00000000000000a4"},
	}, attrs["anomaly.series"], "highest score first")

	e := recs[3]
	assert.Equal(t, "host.name=web-1: 4 series back to normal after 4m0s (peak score 0.95)", e.Body().Str())
	assert.Equal(t, pcommon.NewTimestampFromTime(t0.Add(4*time.Minute)), e.Timestamp(), "the last member's end")
	assert.Equal(t, map[string]any{
		"anomaly.incident.id":         "00000000000000a1",
		"anomaly.series.count":        int64(4),
		"anomaly.incident.duration":   240.0,
		"anomaly.incident.peak_score": 0.95,
	}, e.Attributes().AsRaw())

	assert.Equal(t, "host.name=web-1: 1 series anomalous (top score 0.97): system.memory.utilization 0.97", recs[4].Body().Str())

	// The entity's resource is its group_by attributes.
	for _, rl := range ld.ResourceLogs().All() {
		if _, ok := rl.Resource().Attributes().Get("host.name"); ok {
			assert.Equal(t, map[string]any{"host.name": "web-1"}, rl.Resource().Attributes().AsRaw())
			assert.Equal(t, metadata.ScopeName, rl.ScopeLogs().At(0).Scope().Name())
		}
	}
}

// A batch holds many points of each series, metric after metric: the
// transitions are taken in datapoint time order, so one batch with the
// whole scenario gives the same events as one batch per minute.
func TestGroupedOneBigBatch(t *testing.T) {
	sink := new(consumertest.LogsSink)
	c := newConnectorTo(t, groupConfig(), connectortest.NewNopSettings(metadata.Type), sink, issued(nil, groupedIDs))
	// Resources reversed: later minutes come first.
	sc := groupedScenario()
	var rev []pmetric.Metrics
	for i := len(sc) - 1; i >= 0; i-- {
		rev = append(rev, sc[i])
	}
	require.NoError(t, c.ConsumeMetrics(context.Background(), merge(rev...)))
	ld := all(sink)
	var counts []any
	for _, lr := range records(ld) {
		if n, ok := lr.Attributes().Get("anomaly.series.count"); ok {
			counts = append(counts, n.Int())
		}
	}
	// Both entity incidents are due in the one batch: the started events,
	// then the ended ones.
	assert.Equal(t, []any{int64(4), int64(1), int64(4), int64(1)}, counts)
	assert.Equal(t, 6, ld.LogRecordCount())
}

// When the entity's data stop, its started event comes group_window after
// the connector saw the first start, by the collector's clock.
func TestGroupedStartedByWallClock(t *testing.T) {
	sink := new(consumertest.LogsSink)
	c := newConnectorTo(t, groupConfig(), connectortest.NewNopSettings(metadata.Type), sink, issued([]uint64{1, 2}, nil))
	ae := c.(*anomalyEvents)
	now := observedAt
	ae.now = func() time.Time { return now }
	require.NoError(t, c.ConsumeMetrics(context.Background(), host("web-1", t0,
		dp{metric: "a", score: 0.9, start: 1}, dp{metric: "b", score: 0.9, start: 2})))
	ae.flushGroups(context.Background(), false)
	assert.Zero(t, sink.LogRecordCount(), "the window is not over")
	now = now.Add(time.Minute)
	ae.flushGroups(context.Background(), false)
	require.Equal(t, 1, sink.LogRecordCount())
	n, _ := records(all(sink))[0].Attributes().Get("anomaly.series.count")
	assert.Equal(t, int64(2), n.Int())
	ae.flushGroups(context.Background(), false)
	assert.Equal(t, 1, sink.LogRecordCount(), "sent once")
}

// A series whose start reaches the connector after the started event is
// counted in the end and sends nothing itself; the ended event waits for
// it.
func TestGroupedLateMember(t *testing.T) {
	sink := new(consumertest.LogsSink)
	c := newConnectorTo(t, groupConfig(), connectortest.NewNopSettings(metadata.Type), sink, issued(nil, []uint64{1, 2}))
	ctx := context.Background()
	require.NoError(t, c.ConsumeMetrics(ctx, host("web-1", t0, dp{metric: "a", score: 0.9, start: 1})))
	require.NoError(t, c.ConsumeMetrics(ctx, host("web-1", t0.Add(2*time.Minute), quiet("a"))))
	require.Equal(t, 1, sink.LogRecordCount(), "started, with one series")
	// b started at t0+30s, but its datapoint comes only now.
	require.NoError(t, c.ConsumeMetrics(ctx, host("web-1", t0.Add(30*time.Second), dp{metric: "b", score: 0.9, start: 2})))
	require.NoError(t, c.ConsumeMetrics(ctx, host("web-1", t0.Add(3*time.Minute), dp{metric: "a", score: 0.4, end: 1})))
	assert.Equal(t, 1, sink.LogRecordCount(), "no second started event; b still open")
	require.NoError(t, c.ConsumeMetrics(ctx, host("web-1", t0.Add(4*time.Minute), dp{metric: "b", score: 0.4, end: 2})))
	require.Equal(t, 2, sink.LogRecordCount())
	e := records(all(sink))[1]
	assert.Equal(t, "anomaly.ended", e.EventName())
	n, _ := e.Attributes().Get("anomaly.series.count")
	assert.Equal(t, int64(2), n.Int())
}

// An incident whose start the connector did not group (it started before
// the connector did) ends with its own per-series event.
func TestGroupedUnknownMemberEnds(t *testing.T) {
	sink := new(consumertest.LogsSink)
	c := newConnectorTo(t, groupConfig(), connectortest.NewNopSettings(metadata.Type), sink, issued(nil, []uint64{7}))
	require.NoError(t, c.ConsumeMetrics(context.Background(), host("web-1", t0, dp{metric: "a", score: 0.4, end: 7, peak: 0.9})))
	require.Equal(t, 1, sink.LogRecordCount())
	e := records(all(sink))[0]
	assert.Equal(t, "anomaly.ended", e.EventName())
	assert.Equal(t, "a is back to normal after 0s (peak score 0.90)", e.Body().Str())
}

// At max_open_groups the oldest entity incident is dropped, its started
// event sent first; its members' ends are then reported per series.
func TestGroupedEviction(t *testing.T) {
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	cfg := groupConfig()
	cfg.MaxOpenGroups = 2
	sink := new(consumertest.LogsSink)
	c := newConnectorTo(t, cfg, metadatatest.NewSettings(tt), sink, issued(nil, []uint64{1, 2, 3}))
	ctx := context.Background()
	for i, h := range []string{"a", "b", "c"} {
		require.NoError(t, c.ConsumeMetrics(ctx, host(h, t0, dp{metric: "m", score: 0.9, start: uint64(i + 1)})))
	}
	recs := records(all(sink))
	require.Len(t, recs, 1, "host a's incident, dropped for c's, sent its start")
	assert.Equal(t, "host.name=a: 1 series anomalous (top score 0.90): m 0.90", recs[0].Body().Str())
	metadatatest.AssertEqualConnectorAnomalyeventsGroupsEvicted(t, tt, []metricdata.DataPoint[int64]{{Value: 1}}, metricdatatest.IgnoreTimestamp())
	metadatatest.AssertEqualConnectorAnomalyeventsGroupsOpen(t, tt, []metricdata.DataPoint[int64]{{Value: 2}}, metricdatatest.IgnoreTimestamp())

	require.NoError(t, c.ConsumeMetrics(ctx, host("a", t0.Add(time.Minute), dp{metric: "m", score: 0.4, end: 1, peak: 0.9})))
	recs = records(all(sink))
	require.Len(t, recs, 2)
	assert.Equal(t, "m is back to normal after 0s (peak score 0.90)", recs[1].Body().Str())
}

// A long list is cut at maxListed, highest scores kept, and says so.
func TestGroupedListIsBounded(t *testing.T) {
	var dps []dp
	var ids []uint64
	for i := range 30 {
		id := uint64(100 + i)
		ids = append(ids, id)
		dps = append(dps, dp{metric: fmt.Sprintf("m%02d", i), score: 0.6 + float64(i)/100, start: id})
	}
	sink := new(consumertest.LogsSink)
	c := newConnectorTo(t, groupConfig(), connectortest.NewNopSettings(metadata.Type), sink, issued(ids, nil))
	require.NoError(t, c.ConsumeMetrics(context.Background(), host("web-1", t0, dps...)))
	require.NoError(t, c.ConsumeMetrics(context.Background(), host("web-1", t0.Add(2*time.Minute), quiet("m00"))))
	recs := records(all(sink))
	require.Len(t, recs, 1)
	a := recs[0].Attributes().AsRaw()
	assert.Equal(t, int64(30), a["anomaly.series.count"])
	assert.Equal(t, true, a["anomaly.series.truncated"])
	list := a["anomaly.series"].([]any)
	require.Len(t, list, maxListed)
	assert.Equal(t, "m29", list[0].(map[string]any)["metric.name"])
	assert.Equal(t, "m10", list[maxListed-1].(map[string]any)["metric.name"])
	assert.Contains(t, recs[0].Body().Str(), "(top score 0.89): m29 0.89, m28 0.88, m27 0.87 and 27 more")
}

// Shutdown sends the started events still waiting for their window, and
// the ticker goroutine is gone (goleak).
func TestGroupedShutdownSendsPending(t *testing.T) {
	sink := new(consumertest.LogsSink)
	c, err := NewFactory().CreateMetricsToLogs(context.Background(), connectortest.NewNopSettings(metadata.Type), groupConfig(), sink)
	require.NoError(t, err)
	c.(*anomalyEvents).trust = newTrust(false, issued([]uint64{1}, nil), "shutdown")
	require.NoError(t, c.Start(context.Background(), componenttest.NewNopHost()))
	require.NoError(t, c.ConsumeMetrics(context.Background(), host("web-1", t0, dp{metric: "a", score: 0.9, start: 1})))
	assert.Zero(t, sink.LogRecordCount())
	require.NoError(t, c.Shutdown(context.Background()))
	assert.Equal(t, 1, sink.LogRecordCount())
}

// Without group_by nothing changes: one event per series.
func TestUngroupedByDefault(t *testing.T) {
	sink := new(consumertest.LogsSink)
	c := newConnectorTo(t, defaultConfig(), connectortest.NewNopSettings(metadata.Type), sink, issued(nil, groupedIDs))
	for _, md := range groupedScenario() {
		require.NoError(t, c.ConsumeMetrics(context.Background(), md))
	}
	names := map[string]int{}
	for _, n := range eventNames(all(sink)) {
		names[n]++
	}
	assert.Equal(t, map[string]int{"anomaly.started": 6, "anomaly.ended": 6}, names)
	assert.Nil(t, c.(*anomalyEvents).groups)
}
