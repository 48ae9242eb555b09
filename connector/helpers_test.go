package anomalyeventsconnector

import (
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/otel-iforest/iforest/internal/verdict"
)

// t0 is the time of every datapoint in the test input; observedAt is the
// connector's clock in the tests.
var (
	t0         = time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)
	observedAt = time.Date(2026, 3, 14, 9, 27, 0, 0, time.UTC)
)

func fixedClock() time.Time { return observedAt }

// The incidents of the golden input, as the processor would have issued
// them: open (a start, or flagged points inside), and ended.
var (
	goldenOpen  = []uint64{0x5f0c6e1b2a3d4c5e, 0x0a1b2c3d4e5f6071, 0xc0ffee0000000001, 0xc0ffee0000000002}
	goldenEnded = []uint64{0x77e2a9c0d1f3b5a4, 0xc0ffee0000000003}
)

// issued returns a ledger in which a processor opened open and opened and
// ended ended.
func issued(open, ended []uint64) *verdict.Ledger {
	l := verdict.NewLedger(verdict.MaxEntries, verdict.Grace, time.Now)
	for _, id := range open {
		l.Opened(id)
	}
	for _, id := range ended {
		l.Opened(id)
		l.Closed(id)
	}
	return l
}

// goldenLedger vouches for the golden input's incidents.
func goldenLedger() *verdict.Ledger { return issued(goldenOpen, goldenEnded) }

// verdict attribute helpers, with the default prefix.

func flagged(m pcommon.Map, score, threshold float64) {
	m.PutDouble("anomaly.score", score)
	m.PutBool("anomaly.detected", true)
	m.PutDouble("anomaly.threshold", threshold)
}

func normal(m pcommon.Map, score float64) {
	m.PutDouble("anomaly.score", score)
	m.PutBool("anomaly.detected", false)
}

func expected(m pcommon.Map, lo, hi float64) {
	m.PutDouble("anomaly.expected.min", lo)
	m.PutDouble("anomaly.expected.max", hi)
}

func started(m pcommon.Map, id string) {
	m.PutStr("anomaly.incident", "started")
	m.PutStr("anomaly.incident.id", id)
}

func ended(m pcommon.Map, id string, seconds, peak float64) {
	m.PutStr("anomaly.incident", "ended")
	m.PutStr("anomaly.incident.id", id)
	m.PutDouble("anomaly.incident.duration", seconds)
	m.PutDouble("anomaly.incident.peak_score", peak)
}

func gaugePoint(sm pmetric.ScopeMetrics, name string, v float64) pmetric.NumberDataPoint {
	m := sm.Metrics().AppendEmpty()
	m.SetName(name)
	dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
	dp.SetTimestamp(pcommon.NewTimestampFromTime(t0))
	dp.SetDoubleValue(v)
	return dp
}

// goldenInput is the scored batch behind testdata/golden/input.yaml: every
// metric type, incident starts and ends, flagged points inside incidents,
// points without verdicts, and resources and scopes without any event.
func goldenInput() pmetric.Metrics {
	ts := pcommon.NewTimestampFromTime(t0)
	start := pcommon.NewTimestampFromTime(t0.Add(-time.Hour))
	md := pmetric.NewMetrics()

	// Resource 1: a web host.
	rm := md.ResourceMetrics().AppendEmpty()
	rm.SetSchemaUrl("https://opentelemetry.io/schemas/1.38.0")
	rm.Resource().Attributes().PutStr("service.name", "checkout")
	rm.Resource().Attributes().PutStr("host.name", "web-1")
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName("github.com/open-telemetry/opentelemetry-collector-contrib/receiver/hostmetricsreceiver/internal/scraper/cpuscraper")
	sm.Scope().SetVersion("0.165.0")
	sm.Scope().Attributes().PutStr("scraper", "cpu")

	cpu := sm.Metrics().AppendEmpty()
	cpu.SetName("system.cpu.utilization")
	cpu.SetUnit("1")
	dps := cpu.SetEmptyGauge().DataPoints()
	// cpu0 opens an incident.
	dp := dps.AppendEmpty()
	dp.SetTimestamp(ts)
	dp.SetDoubleValue(0.93)
	dp.Attributes().PutStr("cpu", "cpu0")
	dp.Attributes().PutStr("state", "user")
	flagged(dp.Attributes(), 0.8123, 0.7)
	expected(dp.Attributes(), 0.1812, 0.5234)
	started(dp.Attributes(), "5f0c6e1b2a3d4c5e")
	// cpu1 is normal.
	dp = dps.AppendEmpty()
	dp.SetTimestamp(ts)
	dp.SetDoubleValue(0.31)
	dp.Attributes().PutStr("cpu", "cpu1")
	dp.Attributes().PutStr("state", "user")
	normal(dp.Attributes(), 0.44)
	// cpu2 is flagged inside an open incident: an event only with
	// emit_datapoints.
	dp = dps.AppendEmpty()
	dp.SetTimestamp(ts)
	dp.SetDoubleValue(0.97)
	dp.Attributes().PutStr("cpu", "cpu2")
	dp.Attributes().PutStr("state", "user")
	flagged(dp.Attributes(), 0.88, 0.7)
	expected(dp.Attributes(), 0.2, 0.6)
	dp.Attributes().PutStr("anomaly.incident.id", "0a1b2c3d4e5f6071")
	// cpu3 is in warm-up: no verdict at all.
	dp = dps.AppendEmpty()
	dp.SetTimestamp(ts)
	dp.SetDoubleValue(0.05)
	dp.Attributes().PutStr("cpu", "cpu3")
	dp.Attributes().PutStr("state", "user")

	// A cumulative counter whose incident ends.
	req := sm.Metrics().AppendEmpty()
	req.SetName("http.server.requests")
	sum := req.SetEmptySum()
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	sum.SetIsMonotonic(true)
	dp = sum.DataPoints().AppendEmpty()
	dp.SetStartTimestamp(start)
	dp.SetTimestamp(ts)
	dp.SetIntValue(1234567)
	dp.Attributes().PutStr("http.route", "/api/cart")
	dp.Attributes().PutInt("http.response.status_code", 500)
	normal(dp.Attributes(), 0.41)
	ended(dp.Attributes(), "77e2a9c0d1f3b5a4", 300, 0.9134)

	// An int gauge flagged without incident, with a double and a bool
	// attribute.
	dp = gaugePoint(sm, "process.threads", 0)
	dp.SetIntValue(4096)
	dp.Attributes().PutDouble("nice", 0.123456)
	dp.Attributes().PutBool("daemon", true)
	flagged(dp.Attributes(), 0.95, 0.8)
	expected(dp.Attributes(), 80, 120)

	// A second scope of the same resource without any event.
	sm2 := rm.ScopeMetrics().AppendEmpty()
	sm2.Scope().SetName("memoryscraper")
	dp = gaugePoint(sm2, "system.memory.utilization", 0.42)
	normal(dp.Attributes(), 0.5)

	// Resource 2: a database host with distributions.
	rm = md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "payments")
	rm.Resource().Attributes().PutStr("host.name", "db-1")
	sm = rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName("payments-instrumentation")
	sm.Scope().SetVersion("1.2.3")

	h := sm.Metrics().AppendEmpty()
	h.SetName("http.server.request.duration")
	h.SetUnit("s")
	hist := h.SetEmptyHistogram()
	hist.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
	hdp := hist.DataPoints().AppendEmpty()
	hdp.SetStartTimestamp(pcommon.NewTimestampFromTime(t0.Add(-time.Minute)))
	hdp.SetTimestamp(ts)
	hdp.SetCount(120)
	hdp.SetSum(30)
	hdp.ExplicitBounds().FromRaw([]float64{0.1, 0.5, 1})
	hdp.BucketCounts().FromRaw([]uint64{20, 60, 30, 10})
	hdp.Attributes().PutStr("http.route", "/pay")
	flagged(hdp.Attributes(), 0.93, 0.8)
	hdp.Attributes().PutStr("anomaly.top_feature", "mean")
	started(hdp.Attributes(), "c0ffee0000000001")

	e := sm.Metrics().AppendEmpty()
	e.SetName("rpc.server.duration")
	e.SetUnit("ms")
	exp := e.SetEmptyExponentialHistogram()
	exp.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
	edp := exp.DataPoints().AppendEmpty()
	edp.SetTimestamp(ts)
	edp.SetCount(8)
	edp.SetSum(36)
	edp.SetScale(1)
	edp.Positive().BucketCounts().FromRaw([]uint64{2, 4, 2})
	edp.Attributes().PutStr("rpc.method", "Charge")
	flagged(edp.Attributes(), 0.85, 0.8)
	edp.Attributes().PutStr("anomaly.top_feature", "count_rate")
	edp.Attributes().PutStr("anomaly.incident.id", "c0ffee0000000002")

	s := sm.Metrics().AppendEmpty()
	s.SetName("db.query.duration")
	s.SetUnit("s")
	sdp := s.SetEmptySummary().DataPoints().AppendEmpty()
	sdp.SetTimestamp(ts)
	sdp.SetCount(50)
	sdp.SetSum(2.5)
	q := sdp.QuantileValues().AppendEmpty()
	q.SetQuantile(0.99)
	q.SetValue(0.4)
	sdp.Attributes().PutStr("db.system", "postgresql")
	normal(sdp.Attributes(), 0.39)
	ended(sdp.Attributes(), "c0ffee0000000003", 95.5, 0.87)

	// Resource 3: scored, nothing to report.
	rm = md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "quiet")
	sm = rm.ScopeMetrics().AppendEmpty()
	dp = gaugePoint(sm, "system.cpu.utilization", 0.2)
	normal(dp.Attributes(), 0.45)
	return md
}
