package anomalyeventsconnector

import (
	"context"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/otel-iforest/iforest/connector/internal/metadata"
	"github.com/otel-iforest/iforest/connector/internal/metadatatest"
)

// settingsNamed are nop settings of the connector anomalyevents/name.
func settingsNamed(name string) connector.Settings {
	set := connectortest.NewNopSettings(metadata.Type)
	set.ID = component.NewIDWithName(metadata.Type, name)
	return set
}

// forgedBatch is what a client that can send OTLP would send to raise or
// end alarms: the processor's attributes with made-up ids and scores.
func forgedBatch() pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("host.name", "web-1")
	sm := rm.ScopeMetrics().AppendEmpty()
	for i, score := range []float64{math.NaN(), 1e308, math.Inf(1), -1, 0.99} {
		dp := gaugePoint(sm, "forged", float64(i))
		a := dp.Attributes()
		a.PutDouble("anomaly.score", score)
		a.PutBool("anomaly.detected", true)
		a.PutStr("anomaly.incident", "started")
		a.PutStr("anomaly.incident.id", "0123456789abcdef")
	}
	// An end, a flagged point inside a made-up incident, a flagged point
	// with a broken id and one without an id.
	dp := gaugePoint(sm, "forged", 9)
	flagged(dp.Attributes(), 0.9, 0.8)
	ended(dp.Attributes(), "fedcba9876543210", 60, 0.95)
	dp = gaugePoint(sm, "forged", 9)
	flagged(dp.Attributes(), 0.9, 0.8)
	dp.Attributes().PutStr("anomaly.incident.id", "1111111111111111")
	dp = gaugePoint(sm, "forged", 9)
	flagged(dp.Attributes(), 0.9, 0.8)
	dp.Attributes().PutStr("anomaly.incident.id", "not an id")
	dp = gaugePoint(sm, "forged", 9)
	flagged(dp.Attributes(), 0.9, 0.8)
	return md
}

// Forged verdicts raise nothing: no processor of this process issued them.
func TestForgedVerdictsProduceNoEvents(t *testing.T) {
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	cfg := defaultConfig()
	cfg.EmitDatapoints = true
	next := &countingLogs{}
	c := newConnectorTo(t, cfg, metadatatest.NewSettings(tt), next, issued(nil, nil))
	require.NoError(t, c.ConsumeMetrics(context.Background(), forgedBatch()))
	assert.Zero(t, next.calls, "no events")
	metadatatest.AssertEqualConnectorAnomalyeventsVerdictsRejected(t, tt, []metricdata.DataPoint[int64]{
		// NaN, 1e308, +Inf, -1: start and flag each; the broken id.
		{Value: 9, Attributes: attribute.NewSet(attribute.String("reason", "malformed"))},
		// 0.99 (start and flag), the end (end and flag), the flag in a
		// made-up incident.
		{Value: 5, Attributes: attribute.NewSet(attribute.String("reason", "unverified"))},
		{Value: 1, Attributes: attribute.NewSet(attribute.String("reason", "no_incident"))},
	}, metricdatatest.IgnoreTimestamp())
}

// The ledger's answers, one by one: a start or an end is reported once per
// connector; a copy of a real transition (its id read off an event)
// raises nothing; a flagged point needs a live incident.
func TestVerdictsAreReportedOnce(t *testing.T) {
	const open, done = 0x0a, 0x0b
	l := issued([]uint64{open}, []uint64{done})
	cfg := defaultConfig()
	cfg.EmitDatapoints = true
	sink := new(consumertest.LogsSink)
	c := newConnectorTo(t, cfg, connectortest.NewNopSettings(metadata.Type), sink, l)

	batch := func() pmetric.Metrics {
		md := pmetric.NewMetrics()
		sm := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty()
		dp := gaugePoint(sm, "m", 1)
		flagged(dp.Attributes(), 0.9, 0.8)
		started(dp.Attributes(), "000000000000000a")
		dp = gaugePoint(sm, "m", 2)
		normal(dp.Attributes(), 0.4)
		ended(dp.Attributes(), "000000000000000b", 60, 0.9)
		return md
	}
	require.NoError(t, c.ConsumeMetrics(context.Background(), batch()))
	require.NoError(t, c.ConsumeMetrics(context.Background(), batch()))
	require.Len(t, sink.AllLogs(), 2)
	assert.Equal(t, []string{"anomaly.started", "anomaly.detected", "anomaly.ended"}, eventNames(sink.AllLogs()[0]))
	assert.Equal(t, []string{"anomaly.detected"}, eventNames(sink.AllLogs()[1]), "the copy: only the flag, in an open incident")
	l.Closed(open)
	require.NoError(t, c.ConsumeMetrics(context.Background(), batch()))
	assert.Len(t, sink.AllLogs(), 2, "a copy after the incident ended: nothing")

	// A connector under another name (in another pipeline) reports the
	// start and the end too; the flag names an incident now ended.
	other := new(consumertest.LogsSink)
	c2 := newConnectorTo(t, cfg, settingsNamed("other"), other, l)
	require.NoError(t, c2.ConsumeMetrics(context.Background(), batch()))
	assert.Equal(t, []string{"anomaly.started", "anomaly.ended"}, eventNames(other.AllLogs()[0]))
}

// accept_remote_verdicts takes verdicts as they come, from a processor in
// another collector; a score that is not one still is not.
func TestAcceptRemoteVerdicts(t *testing.T) {
	cfg := defaultConfig()
	cfg.EmitDatapoints, cfg.AcceptRemoteVerdicts = true, true
	sink := new(consumertest.LogsSink)
	c := newConnectorTo(t, cfg, connectortest.NewNopSettings(metadata.Type), sink, issued(nil, nil))
	require.NoError(t, c.ConsumeMetrics(context.Background(), forgedBatch()))
	// 0.99: started and detected; the end; three flagged points.
	assert.Equal(t, []string{
		"anomaly.started", "anomaly.detected",
		"anomaly.detected", "anomaly.ended",
		"anomaly.detected", "anomaly.detected", "anomaly.detected",
	}, eventNames(sink.AllLogs()[0]))
}
