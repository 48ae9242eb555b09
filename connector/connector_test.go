package anomalyeventsconnector

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/golden"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/plogtest"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/pmetrictest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/otel-iforest/iforest/connector/internal/metadata"
	"github.com/otel-iforest/iforest/connector/internal/metadatatest"
	"github.com/otel-iforest/iforest/internal/verdict"
)

// Golden files are rewritten with UPDATE_GOLDEN=1 go test ./connector/.
var updateGolden = os.Getenv("UPDATE_GOLDEN") == "1"

// newTestConnector creates a started connector through the factory, with
// the test clock and a ledger that vouches for the golden input's
// incidents, sending to a sink.
func newTestConnector(t *testing.T, cfg *Config, set connector.Settings) (connector.Metrics, *consumertest.LogsSink) {
	t.Helper()
	sink := new(consumertest.LogsSink)
	return newConnectorTo(t, cfg, set, sink, goldenLedger()), sink
}

// newConnectorTo creates a started connector through the factory that asks
// ledger and sends to next.
func newConnectorTo(t *testing.T, cfg *Config, set connector.Settings, next consumer.Logs, ledger *verdict.Ledger) connector.Metrics {
	t.Helper()
	c, err := NewFactory().CreateMetricsToLogs(context.Background(), set, cfg, next)
	require.NoError(t, err)
	ae := c.(*anomalyEvents)
	ae.now = fixedClock
	ae.trust = newTrust(cfg.AcceptRemoteVerdicts, ledger, set.ID.String())
	require.NoError(t, c.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, c.Shutdown(context.Background())) })
	return c
}

func defaultConfig() *Config { return createDefaultConfig().(*Config) }

func TestGolden(t *testing.T) {
	inputFile := filepath.Join("testdata", "golden", "input.yaml")
	if updateGolden {
		require.NoError(t, golden.WriteMetrics(t, inputFile, goldenInput(), golden.SkipMetricTimestampNormalization()))
	}
	emit := defaultConfig()
	emit.EmitDatapoints = true
	remote := defaultConfig()
	remote.EmitDatapoints, remote.AcceptRemoteVerdicts = true, true
	for name, cfg := range map[string]*Config{
		"expected":                 defaultConfig(),
		"expected_emit_datapoints": emit,
		// Every verdict taken as it comes, also process.threads's flag
		// outside an incident.
		"expected_remote_verdicts": remote,
	} {
		t.Run(name, func(t *testing.T) {
			c, sink := newTestConnector(t, cfg, connectortest.NewNopSettings(metadata.Type))
			input, err := golden.ReadMetrics(inputFile)
			require.NoError(t, err)
			require.NoError(t, c.ConsumeMetrics(context.Background(), input))
			require.Len(t, sink.AllLogs(), 1, "one call to the next consumer per batch")
			got := sink.AllLogs()[0]

			expectedFile := filepath.Join("testdata", "golden", name+".yaml")
			if updateGolden {
				require.NoError(t, golden.WriteLogs(t, expectedFile, got))
			}
			want, err := golden.ReadLogs(expectedFile)
			require.NoError(t, err)
			require.NoError(t, plogtest.CompareLogs(want, got))
			// plogtest does not compare event names.
			assert.Equal(t, eventNames(want), eventNames(got))
		})
	}
}

func eventNames(ld plog.Logs) []string {
	var names []string
	for _, rl := range ld.ResourceLogs().All() {
		for _, sl := range rl.ScopeLogs().All() {
			for _, lr := range sl.LogRecords().All() {
				names = append(names, lr.EventName())
			}
		}
	}
	return names
}

func records(ld plog.Logs) []plog.LogRecord {
	var out []plog.LogRecord
	for _, rl := range ld.ResourceLogs().All() {
		for _, sl := range rl.ScopeLogs().All() {
			for _, lr := range sl.LogRecords().All() {
				out = append(out, lr)
			}
		}
	}
	return out
}

// The golden output, spelled out: what an alerting pipeline relies on.
func TestEventShape(t *testing.T) {
	c, sink := newTestConnector(t, defaultConfig(), connectortest.NewNopSettings(metadata.Type))
	require.NoError(t, c.ConsumeMetrics(context.Background(), goldenInput()))
	require.Len(t, sink.AllLogs(), 1)
	ld := sink.AllLogs()[0]

	// Two source resources had events, the third none; the second scope of
	// the first resource had none.
	require.Equal(t, 2, ld.ResourceLogs().Len())
	rl := ld.ResourceLogs().At(0)
	assert.Equal(t, map[string]any{"service.name": "checkout", "host.name": "web-1"}, rl.Resource().Attributes().AsRaw())
	assert.Equal(t, "https://opentelemetry.io/schemas/1.38.0", rl.SchemaUrl())
	require.Equal(t, 1, rl.ScopeLogs().Len())
	scope := rl.ScopeLogs().At(0).Scope()
	assert.Equal(t, "0.165.0", scope.Version())
	assert.Equal(t, map[string]any{"scraper": "cpu"}, scope.Attributes().AsRaw())
	assert.Equal(t, 1, ld.ResourceLogs().At(1).ScopeLogs().Len())

	recs := records(ld)
	assert.Equal(t, []string{"anomaly.started", "anomaly.ended", "anomaly.started", "anomaly.ended"}, eventNames(ld))

	s := recs[0]
	assert.Equal(t, "system.cpu.utilization{cpu=cpu0,state=user} = 0.93 is anomalous (score 0.81 >= 0.70; normal 0.181-0.523)", s.Body().Str())
	assert.Equal(t, plog.SeverityNumberWarn, s.SeverityNumber())
	assert.Equal(t, "WARN", s.SeverityText())
	assert.Equal(t, pcommon.NewTimestampFromTime(t0), s.Timestamp())
	assert.Equal(t, pcommon.NewTimestampFromTime(observedAt), s.ObservedTimestamp())
	assert.Equal(t, map[string]any{
		"cpu":                  "cpu0",
		"state":                "user",
		"metric.name":          "system.cpu.utilization",
		"anomaly.value":        0.93,
		"anomaly.score":        0.8123,
		"anomaly.threshold":    0.7,
		"anomaly.expected.min": 0.1812,
		"anomaly.expected.max": 0.5234,
		"anomaly.incident.id":  "5f0c6e1b2a3d4c5e",
	}, s.Attributes().AsRaw())

	e := recs[1]
	assert.Equal(t, "http.server.requests{http.response.status_code=500,http.route=/api/cart} is back to normal after 5m0s (peak score 0.91)", e.Body().Str())
	assert.Equal(t, plog.SeverityNumberInfo, e.SeverityNumber())
	assert.Equal(t, "INFO", e.SeverityText())
	assert.Equal(t, map[string]any{
		"http.route":                  "/api/cart",
		"http.response.status_code":   int64(500),
		"metric.name":                 "http.server.requests",
		"anomaly.value":               1234567.0,
		"anomaly.score":               0.41,
		"anomaly.incident.id":         "77e2a9c0d1f3b5a4",
		"anomaly.incident.duration":   300.0,
		"anomaly.incident.peak_score": 0.9134,
	}, e.Attributes().AsRaw())

	h := recs[2]
	assert.Equal(t, "http.server.request.duration{http.route=/pay} = count 120, mean 0.25 is anomalous (score 0.93 >= 0.80; top feature mean)", h.Body().Str())
	count, _ := h.Attributes().Get("anomaly.count")
	assert.Equal(t, int64(120), count.Int())
	mean, _ := h.Attributes().Get("anomaly.value")
	assert.Equal(t, 0.25, mean.Double())

	assert.Equal(t, "db.query.duration{db.system=postgresql} is back to normal after 1m36s (peak score 0.87)", recs[3].Body().Str())
}

// With accept_remote_verdicts every flagged point is reported; by default
// only those inside an incident (process.threads's flag has none).
func TestEmitDatapoints(t *testing.T) {
	cfg := defaultConfig()
	cfg.EmitDatapoints = true
	c, sink := newTestConnector(t, cfg, connectortest.NewNopSettings(metadata.Type))
	require.NoError(t, c.ConsumeMetrics(context.Background(), goldenInput()))
	require.Len(t, sink.AllLogs(), 1)
	assert.Equal(t, []string{
		"anomaly.started", "anomaly.detected", // cpu0
		"anomaly.detected",                    // cpu2
		"anomaly.ended",                       // http.server.requests
		"anomaly.started", "anomaly.detected", // histogram
		"anomaly.detected", // exponential histogram
		"anomaly.ended",    // summary
	}, eventNames(sink.AllLogs()[0]))

	cfg.AcceptRemoteVerdicts = true
	c, sink = newTestConnector(t, cfg, connectortest.NewNopSettings(metadata.Type))
	require.NoError(t, c.ConsumeMetrics(context.Background(), goldenInput()))
	require.Len(t, sink.AllLogs(), 1)
	ld := sink.AllLogs()[0]
	// A flagged point that opens an incident yields started, then detected.
	assert.Equal(t, []string{
		"anomaly.started", "anomaly.detected", // cpu0
		"anomaly.detected",                    // cpu2
		"anomaly.ended",                       // http.server.requests
		"anomaly.detected",                    // process.threads
		"anomaly.started", "anomaly.detected", // histogram
		"anomaly.detected", // exponential histogram
		"anomaly.ended",    // summary
	}, eventNames(ld))
	recs := records(ld)
	assert.Equal(t, "system.cpu.utilization{cpu=cpu2,state=user} = 0.97 is anomalous (score 0.88 >= 0.70; normal 0.2-0.6)", recs[2].Body().Str())
	assert.Equal(t, "process.threads{daemon=true,nice=0.123} = 4096 is anomalous (score 0.95 >= 0.80; normal 80-120)", recs[4].Body().Str())
	assert.Equal(t, "rpc.server.duration{rpc.method=Charge} = count 8, mean 4.5 is anomalous (score 0.85 >= 0.80; top feature count_rate)", recs[7].Body().Str())
	for _, i := range []int{1, 2, 4, 6, 7} {
		assert.Equal(t, plog.SeverityNumberWarn, recs[i].SeverityNumber())
		_, ok := recs[i].Attributes().Get("anomaly.incident.duration")
		assert.False(t, ok)
	}
	id, _ := recs[2].Attributes().Get("anomaly.incident.id")
	assert.Equal(t, "0a1b2c3d4e5f6071", id.Str(), "flagged points inside an incident carry its id")
}

func TestIncludeMetricAttributesOff(t *testing.T) {
	cfg := defaultConfig()
	cfg.IncludeMetricAttributes = false
	c, sink := newTestConnector(t, cfg, connectortest.NewNopSettings(metadata.Type))
	require.NoError(t, c.ConsumeMetrics(context.Background(), goldenInput()))
	s := records(sink.AllLogs()[0])[0]
	_, ok := s.Attributes().Get("cpu")
	assert.False(t, ok)
	name, _ := s.Attributes().Get("metric.name")
	assert.Equal(t, "system.cpu.utilization", name.Str())
	// The body still names the series.
	assert.Contains(t, s.Body().Str(), "system.cpu.utilization{cpu=cpu0,state=user}")
}

// With another prefix the connector reads <prefix>* and writes <prefix>*;
// attributes under the default prefix are then ordinary attributes.
func TestCustomPrefix(t *testing.T) {
	cfg := defaultConfig()
	cfg.AttributePrefix = "iforest."
	sink := new(consumertest.LogsSink)
	c := newConnectorTo(t, cfg, connectortest.NewNopSettings(metadata.Type), sink, issued([]uint64{0xab, 0xcd}, nil))

	md := pmetric.NewMetrics()
	sm := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty()
	dp := gaugePoint(sm, "queue.depth", 512)
	dp.Attributes().PutStr("anomaly.kind", "user attribute")
	dp.Attributes().PutDouble("iforest.score", 0.9)
	dp.Attributes().PutBool("iforest.detected", true)
	dp.Attributes().PutDouble("iforest.threshold", 0.8)
	dp.Attributes().PutStr("iforest.incident", "started")
	dp.Attributes().PutStr("iforest.incident.id", "00000000000000ab")
	// A point with the default prefix's verdict is not ours.
	other := gaugePoint(sm, "queue.depth", 1)
	flagged(other.Attributes(), 0.9, 0.8)
	started(other.Attributes(), "00000000000000cd")

	require.NoError(t, c.ConsumeMetrics(context.Background(), md))
	require.Len(t, sink.AllLogs(), 1)
	recs := records(sink.AllLogs()[0])
	require.Len(t, recs, 1)
	assert.Equal(t, "queue.depth{anomaly.kind=user attribute} = 512 is anomalous (score 0.90 >= 0.80)", recs[0].Body().Str())
	assert.Equal(t, map[string]any{
		"anomaly.kind":        "user attribute",
		"metric.name":         "queue.depth",
		"iforest.value":       512.0,
		"iforest.score":       0.9,
		"iforest.threshold":   0.8,
		"iforest.incident.id": "00000000000000ab",
	}, recs[0].Attributes().AsRaw())
}

// Datapoints without verdicts, with negative verdicts or with verdicts of
// an unknown shape produce nothing, and the next consumer is not called.
func TestNothingToReport(t *testing.T) {
	cfg := defaultConfig()
	cfg.EmitDatapoints = true
	next := &countingLogs{}
	c := newConnectorTo(t, cfg, connectortest.NewNopSettings(metadata.Type), next, goldenLedger())

	md := pmetric.NewMetrics()
	require.NoError(t, c.ConsumeMetrics(context.Background(), md))

	sm := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty()
	gaugePoint(sm, "plain", 1)
	normal(gaugePoint(sm, "scored", 1).Attributes(), 0.4)
	odd := gaugePoint(sm, "odd", 1).Attributes()
	odd.PutStr("anomaly.detected", "true") // not a bool
	odd.PutStr("anomaly.incident", "ongoing")
	gaugePoint(sm, "wrong.type", 1).Attributes().PutInt("anomaly.incident", 1)
	empty := sm.Metrics().AppendEmpty()
	empty.SetName("empty")
	empty.SetEmptyHistogram().DataPoints().AppendEmpty().Attributes().PutDouble("anomaly.score", 0.1)
	require.NoError(t, c.ConsumeMetrics(context.Background(), md))
	assert.Zero(t, next.calls)
}

type countingLogs struct {
	consumertest.LogsSink
	calls int
}

func (c *countingLogs) ConsumeLogs(ctx context.Context, ld plog.Logs) error {
	c.calls++
	return c.LogsSink.ConsumeLogs(ctx, ld)
}

// The connector only reads its input: MutatesData is false and the input
// is unchanged (read-only input would panic on any write).
func TestInputUnchanged(t *testing.T) {
	cfg := defaultConfig()
	cfg.EmitDatapoints = true
	c, sink := newTestConnector(t, cfg, connectortest.NewNopSettings(metadata.Type))
	assert.False(t, c.Capabilities().MutatesData)

	in := goldenInput()
	want := pmetric.NewMetrics()
	in.CopyTo(want)
	in.MarkReadOnly()
	require.NoError(t, c.ConsumeMetrics(context.Background(), in))
	require.NoError(t, pmetrictest.CompareMetrics(want, in))
	assert.Equal(t, 8, sink.LogRecordCount())
}

func TestLifecycle(t *testing.T) {
	f := NewFactory()
	assert.Equal(t, metadata.Type, f.Type())
	assert.Equal(t, metadata.MetricsToLogsStability, f.MetricsToLogsStability())
	sink := new(consumertest.LogsSink)

	// Shutdown without Start is fine.
	c, err := f.CreateMetricsToLogs(context.Background(), connectortest.NewNopSettings(metadata.Type), f.CreateDefaultConfig(), sink)
	require.NoError(t, err)
	require.NoError(t, c.Shutdown(context.Background()))

	// Start, work, Shutdown; no goroutines are left (goleak in TestMain).
	c, err = f.CreateMetricsToLogs(context.Background(), connectortest.NewNopSettings(metadata.Type), f.CreateDefaultConfig(), sink)
	require.NoError(t, err)
	c.(*anomalyEvents).trust = newTrust(false, goldenLedger(), "lifecycle")
	require.NoError(t, c.Start(context.Background(), componenttest.NewNopHost()))
	require.NoError(t, c.ConsumeMetrics(context.Background(), goldenInput()))
	require.NoError(t, c.Shutdown(context.Background()))
	assert.Equal(t, 4, sink.LogRecordCount())
	// ObservedTimestamp comes from the wall clock outside tests.
	assert.NotZero(t, records(sink.AllLogs()[0])[0].ObservedTimestamp())
}

func TestTelemetry(t *testing.T) {
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	cfg := defaultConfig()
	cfg.EmitDatapoints = true
	c, _ := newTestConnector(t, cfg, metadatatest.NewSettings(tt))

	require.NoError(t, c.ConsumeMetrics(context.Background(), goldenInput()))
	// The same batch again: its starts and ends were reported; the flagged
	// points, inside live incidents, are reported again.
	require.NoError(t, c.ConsumeMetrics(context.Background(), goldenInput()))
	metadatatest.AssertEqualConnectorAnomalyeventsEventsEmitted(t, tt, []metricdata.DataPoint[int64]{
		{Value: 2, Attributes: attribute.NewSet(attribute.String("event", "started"))},
		{Value: 8, Attributes: attribute.NewSet(attribute.String("event", "detected"))},
		{Value: 2, Attributes: attribute.NewSet(attribute.String("event", "ended"))},
	}, metricdatatest.IgnoreTimestamp())
	metadatatest.AssertEqualConnectorAnomalyeventsVerdictsRejected(t, tt, []metricdata.DataPoint[int64]{
		{Value: 4, Attributes: attribute.NewSet(attribute.String("reason", "repeated"))},
		// process.threads, flagged outside an incident, twice.
		{Value: 2, Attributes: attribute.NewSet(attribute.String("reason", "no_incident"))},
	}, metricdatatest.IgnoreTimestamp())
}

// An error of the next consumer is returned (so the receiver can retry or
// drop) and the events are not counted as emitted.
func TestNextConsumerError(t *testing.T) {
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	boom := errors.New("boom")
	c := newConnectorTo(t, defaultConfig(), metadatatest.NewSettings(tt), consumertest.NewErr(boom), goldenLedger())
	require.ErrorIs(t, c.ConsumeMetrics(context.Background(), goldenInput()), boom)
	_, err := tt.GetMetric("otelcol_connector_anomalyevents_events_emitted")
	assert.Error(t, err, "nothing counted")
}

func TestMultivariateExplanation(t *testing.T) {
	sink := new(consumertest.LogsSink)
	c := newConnectorTo(t, defaultConfig(), connectortest.NewNopSettings(metadata.Type), sink, issued([]uint64{0xaa}, nil))
	md := pmetric.NewMetrics()
	sm := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty()
	dp := gaugePoint(sm, "cpu_usage", 91.5)
	flagged(dp.Attributes(), 0.86, 0.78)
	started(dp.Attributes(), "00000000000000aa")
	dp.Attributes().PutStr("anomaly.model", "machine")
	dp.Attributes().PutStr("anomaly.top_feature", "cpu_usage")
	dp.Attributes().PutStr("anomaly.contributions", "cpu_usage 0.83, memory_usage 0.17")
	require.NoError(t, c.ConsumeMetrics(context.Background(), md))
	recs := records(sink.AllLogs()[0])
	require.Len(t, recs, 1)
	assert.Equal(t, "cpu_usage = 91.5 is anomalous (score 0.86 >= 0.78; model machine: cpu_usage 0.83, memory_usage 0.17)", recs[0].Body().Str())
	top, _ := recs[0].Attributes().Get("anomaly.top_feature")
	assert.Equal(t, "cpu_usage", top.Str())
	model, _ := recs[0].Attributes().Get("anomaly.model")
	assert.Equal(t, "machine", model.Str())
	contrib, _ := recs[0].Attributes().Get("anomaly.contributions")
	assert.Equal(t, "cpu_usage 0.83, memory_usage 0.17", contrib.Str())
}
