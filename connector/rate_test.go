package anomalyeventsconnector

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/otel-iforest/iforest/connector/internal/metadata"
	"github.com/otel-iforest/iforest/connector/internal/metadatatest"
	"github.com/otel-iforest/iforest/internal/verdict"
)

// newRate creates a started metrics -> metrics connector through the
// factory that asks ledger and sends to a sink.
func newRate(t *testing.T, cfg *Config, set connector.Settings, ledger *verdict.Ledger) (connector.Metrics, *consumertest.MetricsSink) {
	t.Helper()
	sink := new(consumertest.MetricsSink)
	c, err := NewFactory().CreateMetricsToMetrics(context.Background(), set, cfg, sink)
	require.NoError(t, err)
	c.(*anomalyRate).trust.ledger = ledger
	require.NoError(t, c.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, c.Shutdown(context.Background())) })
	return c, sink
}

// rate is one emitted anomaly.rate datapoint.
type rate struct {
	resource    map[string]any
	start, end  time.Time
	value       float64
	name, scope string
}

func rates(sink *consumertest.MetricsSink) []rate {
	var out []rate
	for _, md := range sink.AllMetrics() {
		for _, rm := range md.ResourceMetrics().All() {
			for _, sm := range rm.ScopeMetrics().All() {
				for _, m := range sm.Metrics().All() {
					if m.Type() != pmetric.MetricTypeGauge {
						continue // the counts, see rateCounts
					}
					for _, dp := range m.Gauge().DataPoints().All() {
						out = append(out, rate{
							resource: rm.Resource().Attributes().AsRaw(),
							start:    dp.StartTimestamp().AsTime(), end: dp.Timestamp().AsTime(),
							value: dp.DoubleValue(), name: m.Name(), scope: sm.Scope().Name(),
						})
					}
				}
			}
		}
	}
	return out
}

// rateCounts are the scored and flagged counts sent with the rates, by
// resource and interval start.
func rateCounts(t *testing.T, sink *consumertest.MetricsSink) map[string][2]int64 {
	out := map[string][2]int64{}
	for _, md := range sink.AllMetrics() {
		for _, rm := range md.ResourceMetrics().All() {
			for _, sm := range rm.ScopeMetrics().All() {
				for _, m := range sm.Metrics().All() {
					i := map[string]int{"anomaly.scored": 0, "anomaly.flagged": 1}
					k, ok := i[m.Name()]
					if !ok {
						continue
					}
					require.Equal(t, pmetric.AggregationTemporalityDelta, m.Sum().AggregationTemporality())
					for _, dp := range m.Sum().DataPoints().All() {
						key := fmt.Sprint(rm.Resource().Attributes().AsRaw(), dp.StartTimestamp().AsTime())
						c := out[key]
						c[k] = dp.IntValue()
						out[key] = c
					}
				}
			}
		}
	}
	return out
}

// minute i after a whole minute (t0 is 53 s into one).
func minute(i int) time.Time { return t0.Truncate(time.Minute).Add(time.Duration(i) * time.Minute) }

func TestRatePerEntity(t *testing.T) {
	cfg := groupConfig()
	c, sink := newRate(t, cfg, connectortest.NewNopSettings(metadata.Type), issued([]uint64{1}, nil))
	ctx := context.Background()
	// Minute 0: four series of web-1, one flagged inside incident 1, twice
	// (two scrapes); db-1 all normal.
	for _, s := range []int{0, 30} {
		at := minute(0).Add(time.Duration(s) * time.Second)
		require.NoError(t, c.ConsumeMetrics(ctx, merge(
			host("web-1", at, dp{metric: "a", score: 0.9, in: 1}, quiet("b"), quiet("c"), quiet("d")),
			host("db-1", at, quiet("a"), quiet("b")))))
	}
	assert.Empty(t, rates(sink), "minute 0 is still open")
	// Minute 1 closes minute 0 of both.
	require.NoError(t, c.ConsumeMetrics(ctx, merge(host("web-1", minute(1), quiet("a")), host("db-1", minute(1), quiet("a")))))
	got := rates(sink)
	require.Len(t, got, 2)
	assert.Equal(t, rate{
		resource: map[string]any{"host.name": "web-1"}, start: minute(0), end: minute(1), value: 0.25,
		name: "anomaly.rate", scope: metadata.ScopeName,
	}, got[0])
	assert.Equal(t, map[string]any{"host.name": "db-1"}, got[1].resource)
	assert.Equal(t, 0.0, got[1].value)
	require.Len(t, sink.AllMetrics(), 1, "one call per batch")
	m := sink.AllMetrics()[0].ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0)
	assert.Equal(t, "1", m.Unit())
	// Each rate comes with the counts it is made of.
	counts := rateCounts(t, sink)
	for _, r := range got {
		c, ok := counts[fmt.Sprint(r.resource, r.start)]
		require.True(t, ok, "counts for %v", r.resource)
		require.Positive(t, c[0])
		assert.InDelta(t, r.value, float64(c[1])/float64(c[0]), 1e-12, "flagged / scored for %v", r.resource)
	}
}

// Without group_by the entity is the whole resource; points without a
// verdict are not counted; one batch may close several intervals.
func TestRateWholeResource(t *testing.T) {
	c, sink := newRate(t, defaultConfig(), connectortest.NewNopSettings(metadata.Type), issued([]uint64{1}, nil))
	md := merge(
		host("web-1", minute(0), dp{metric: "a", score: 0.9, in: 1}, quiet("b")),
		host("web-1", minute(1), quiet("a"), quiet("b")),
		host("web-1", minute(2), quiet("a")),
	)
	unscored := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().AppendEmpty()
	unscored.SetName("plain")
	unscored.SetEmptyGauge().DataPoints().AppendEmpty().SetTimestamp(pcommon.NewTimestampFromTime(minute(0)))
	require.NoError(t, c.ConsumeMetrics(context.Background(), md))
	got := rates(sink)
	require.Len(t, got, 2)
	assert.Equal(t, map[string]any{"host.name": "web-1", "service.name": "shop"}, got[0].resource)
	assert.Equal(t, []float64{0.5, 0}, []float64{got[0].value, got[1].value})
	assert.Equal(t, minute(1), got[1].start)
	assert.Equal(t, 2, sink.AllMetrics()[0].ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Gauge().DataPoints().Len(),
		"one gauge per entity and batch")
}

// A flagged point counts as flagged only if the connector takes its
// verdict; a score that is none is not counted at all.
func TestRateTrust(t *testing.T) {
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	c, sink := newRate(t, groupConfig(), metadatatest.NewSettings(tt), issued(nil, nil))
	forged := host("web-1", minute(0), dp{metric: "a", score: 0.9, in: 0x99}, quiet("b"))
	bad := forged.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(1).Gauge().DataPoints().At(0)
	bad.Attributes().PutDouble("anomaly.score", 1e308)
	require.NoError(t, c.ConsumeMetrics(context.Background(), merge(forged, host("web-1", minute(1), quiet("a")))))
	got := rates(sink)
	require.Len(t, got, 1)
	assert.Equal(t, 0.0, got[0].value, "the forged flag counts as a scored point")
	metadatatest.AssertEqualConnectorAnomalyeventsVerdictsRejected(t, tt, []metricdata.DataPoint[int64]{
		{Value: 1, Attributes: attribute.NewSet(attribute.String("reason", "unverified"))},
		{Value: 1, Attributes: attribute.NewSet(attribute.String("reason", "malformed"))},
	}, metricdatatest.IgnoreTimestamp())
}

// Points of an interval already reported are left out and counted; at
// rate.max_entities new entities are not tracked until idle ones go.
func TestRateLateAndLimit(t *testing.T) {
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	cfg := groupConfig()
	cfg.Rate.MaxEntities = 2
	c, sink := newRate(t, cfg, metadatatest.NewSettings(tt), issued(nil, nil))
	ctx := context.Background()
	require.NoError(t, c.ConsumeMetrics(ctx, merge(host("a", minute(0), quiet("m")), host("b", minute(0), quiet("m")))))
	require.NoError(t, c.ConsumeMetrics(ctx, merge(host("a", minute(1), quiet("m")), host("b", minute(1), quiet("m")))))
	require.Len(t, rates(sink), 2)
	// Late: a's minute 0 was reported.
	require.NoError(t, c.ConsumeMetrics(ctx, host("a", minute(0).Add(50*time.Second), quiet("m"), quiet("n"))))
	// Over the limit: c is not tracked while a and b report.
	require.NoError(t, c.ConsumeMetrics(ctx, host("c", minute(1), quiet("m"))))
	metadatatest.AssertEqualConnectorAnomalyeventsRateDatapointsDropped(t, tt, []metricdata.DataPoint[int64]{
		{Value: 2, Attributes: attribute.NewSet(attribute.String("reason", "late"))},
		{Value: 1, Attributes: attribute.NewSet(attribute.String("reason", "over_limit"))},
	}, metricdatatest.IgnoreTimestamp())
	metadatatest.AssertEqualConnectorAnomalyeventsRateEntities(t, tt, []metricdata.DataPoint[int64]{{Value: 2}}, metricdatatest.IgnoreTimestamp())
	// Minutes later only a reports: b is idle and makes room for c.
	require.NoError(t, c.ConsumeMetrics(ctx, host("a", minute(4), quiet("m"))))
	require.NoError(t, c.ConsumeMetrics(ctx, host("c", minute(4), quiet("m"))))
	require.NoError(t, c.ConsumeMetrics(ctx, host("c", minute(5), quiet("m"))))
	last := rates(sink)
	assert.Equal(t, map[string]any{"host.name": "c"}, last[len(last)-1].resource)
}

// A resource without the group_by attributes names no entity: no rate.
func TestRateNeedsEntity(t *testing.T) {
	c, sink := newRate(t, groupConfig(), connectortest.NewNopSettings(metadata.Type), issued(nil, nil))
	require.NoError(t, c.ConsumeMetrics(context.Background(), merge(host("", minute(0), quiet("m")), host("", minute(1), quiet("m")))))
	assert.Empty(t, rates(sink))
	assert.Zero(t, len(c.(*anomalyRate).entities))
}

// A resource without attributes (a host metrics receiver's, without
// resource detection) is an entity too: the rate of everything it sends.
func TestRateEmptyResource(t *testing.T) {
	c, sink := newRate(t, defaultConfig(), connectortest.NewNopSettings(metadata.Type), issued([]uint64{1}, nil))
	md := merge(
		host("web-1", minute(0), dp{metric: "a", score: 0.9, in: 1}, quiet("b")),
		host("web-1", minute(1), quiet("a"), quiet("b")),
	)
	for _, rm := range md.ResourceMetrics().All() {
		rm.Resource().Attributes().Clear()
	}
	require.NoError(t, c.ConsumeMetrics(context.Background(), md))
	got := rates(sink)
	require.Len(t, got, 1)
	assert.Empty(t, got[0].resource)
	assert.Equal(t, 0.5, got[0].value)
}

// clockedRate is a started rate connector whose collector clock is wall,
// with its telemetry in tt and its output in sink.
type clockedRate struct {
	c    *anomalyRate
	sink *consumertest.MetricsSink
	tt   *componenttest.Telemetry
	wall time.Time
}

func newClockedRate(t *testing.T, cfg *Config, wall time.Time) *clockedRate {
	t.Helper()
	r := &clockedRate{sink: new(consumertest.MetricsSink), tt: componenttest.NewTelemetry(), wall: wall}
	t.Cleanup(func() { require.NoError(t, r.tt.Shutdown(context.Background())) })
	c, err := NewFactory().CreateMetricsToMetrics(context.Background(), metadatatest.NewSettings(r.tt), cfg, r.sink)
	require.NoError(t, err)
	r.c = c.(*anomalyRate)
	r.c.trust.ledger = issued([]uint64{1}, nil)
	r.c.now = func() time.Time { return r.wall }
	require.NoError(t, c.Start(context.Background(), componenttest.NewNopHost()))
	return r
}

// at sends md when the collector's clock reads w.
func (r *clockedRate) at(t *testing.T, w time.Time, md pmetric.Metrics) {
	t.Helper()
	r.wall = w
	require.NoError(t, r.c.ConsumeMetrics(context.Background(), md))
}

// shutdownAt shuts the connector down when the clock reads w.
func (r *clockedRate) shutdownAt(t *testing.T, w time.Time) {
	t.Helper()
	r.wall = w
	require.NoError(t, r.c.Shutdown(context.Background()))
}

func ratesOf(sink *consumertest.MetricsSink, host string) []rate {
	var out []rate
	for _, r := range rates(sink) {
		if r.resource["host.name"] == host {
			out = append(out, r)
		}
	}
	return out
}

// An entity that stops has its last interval sent once the others are a
// whole interval past it and it was silent for an interval (a host that
// went down: the interval most worth seeing), its late points are left
// out, and the intervals over by the collector's clock are sent at
// shutdown, not the one still running.
func TestRateStoppedEntityAndShutdown(t *testing.T) {
	r := newClockedRate(t, groupConfig(), minute(0))
	r.at(t, minute(0), merge(host("a", minute(0), quiet("m")), host("b", minute(0), dp{metric: "m", score: 0.9, in: 1}, quiet("n"))))
	r.at(t, minute(1), host("a", minute(1), quiet("m")))
	assert.Empty(t, ratesOf(r.sink, "b"), "b may still send minute 0's stragglers")
	r.at(t, minute(2), host("a", minute(2), quiet("m")))
	b := ratesOf(r.sink, "b")
	require.Len(t, b, 1, "b's last minute is sent once a is a whole minute past it and b was silent for one")
	assert.Equal(t, minute(0), b[0].start)
	assert.Equal(t, 0.5, b[0].value)
	// A straggler of the minute sent is late; b coming back is counted again.
	r.at(t, minute(2).Add(5*time.Second), host("b", minute(0).Add(55*time.Second), quiet("m")))
	r.at(t, minute(2).Add(10*time.Second), host("b", minute(2), quiet("m")))
	metadatatest.AssertEqualConnectorAnomalyeventsRateDatapointsDropped(t, r.tt, []metricdata.DataPoint[int64]{
		{Value: 1, Attributes: attribute.NewSet(attribute.String("reason", "late"))},
	}, metricdatatest.IgnoreTimestamp())
	counts := rateCounts(t, r.sink)
	assert.Equal(t, [2]int64{2, 1}, counts[fmt.Sprint(map[string]any{"host.name": "b"}, minute(0))], "b's minute 0: 2 scored, 1 flagged, the straggler left out")

	// Shutdown at 02:30: minute 2 is still running and is not sent (the
	// next process would send it again); after a replay, old intervals are.
	sent := len(rates(r.sink))
	r.shutdownAt(t, minute(2).Add(30*time.Second))
	assert.Len(t, rates(r.sink), sent, "nothing over at shutdown")

	r2 := newClockedRate(t, groupConfig(), minute(0))
	r2.at(t, minute(2), merge(host("a", minute(2), quiet("m")), host("b", minute(2), quiet("m"))))
	r2.shutdownAt(t, minute(3).Add(time.Second))
	got := rates(r2.sink)
	require.Len(t, got, 2, "minute 2 of a and b, over by the clock at shutdown")
	for _, x := range got {
		assert.Equal(t, minute(2), x.start)
	}
}

// An entity whose clock runs minutes ahead moves the newest interval on
// every minute; one that keeps sending is not cut short by it, and one that
// replays a backlog keeps its intervals whole.
func TestRateSkewedAndLaggingEntities(t *testing.T) {
	r := newClockedRate(t, groupConfig(), minute(0))
	for m := range 6 {
		r.at(t, minute(m), host("a", minute(m), quiet("m")))
		r.at(t, minute(m).Add(10*time.Second), host("skewed", minute(m+3).Add(10*time.Second), quiet("m")))
		r.at(t, minute(m).Add(30*time.Second), host("a", minute(m).Add(30*time.Second), quiet("m")))
		// A backlog five minutes behind, four points a minute, interleaved.
		for j := range 4 {
			r.at(t, minute(m).Add(time.Duration(31+j)*time.Second), host("backlog", minute(m).Add(-5*time.Minute+time.Duration(15*j)*time.Second), quiet("m")))
		}
	}
	counts := rateCounts(t, r.sink)
	for m := range 5 {
		assert.Equal(t, [2]int64{2, 0}, counts[fmt.Sprint(map[string]any{"host.name": "a"}, minute(m))], "a's minute %d whole", m)
		assert.Equal(t, [2]int64{4, 0}, counts[fmt.Sprint(map[string]any{"host.name": "backlog"}, minute(m-5))], "backlog's minute %d whole", m-5)
	}
	_, err := r.tt.GetMetric("otelcol_connector_anomalyevents_rate_datapoints_dropped")
	assert.Error(t, err, "no datapoint left out")
}

// At max_entities a sweep sends an idle entity's interval and drops it: a
// straggler of that interval is late, not counted and sent again.
func TestRateSweptEntityStragglerIsLate(t *testing.T) {
	cfg := groupConfig()
	cfg.Rate.MaxEntities = 2
	r := newClockedRate(t, cfg, minute(0))
	r.at(t, minute(0), merge(host("a", minute(0), quiet("m")), host("b", minute(0), quiet("m"), quiet("n"))))
	r.at(t, minute(3), host("c", minute(3), quiet("m")))
	require.Len(t, ratesOf(r.sink, "b"), 1, "the sweep sent b's minute 0")
	r.at(t, minute(3), host("b", minute(0).Add(50*time.Second), quiet("m")))
	r.shutdownAt(t, minute(9))
	assert.Len(t, ratesOf(r.sink, "b"), 1, "b's minute 0 is not sent again")
	metadatatest.AssertEqualConnectorAnomalyeventsRateDatapointsDropped(t, r.tt, []metricdata.DataPoint[int64]{
		{Value: 1, Attributes: attribute.NewSet(attribute.String("reason", "late"))},
	}, metricdatatest.IgnoreTimestamp())
}
