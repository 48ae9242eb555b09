package iforestprocessor

import (
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/otel-iforest/iforest/internal/detector"
	"github.com/otel-iforest/iforest/internal/verdict"
)

// The output writers: verdict attributes on datapoints (attributes mode)
// and score metrics (metric mode).

// attrNames are the verdict attributes' names, built once from the prefix.
type attrNames struct{ verdict.Names }

func newAttrNames(prefix string) attrNames {
	return attrNames{verdict.NewNames(prefix)}
}

// strip removes verdict attributes that came with the data: only this
// processor sets them on the metrics it selects, so a client cannot raise
// an incident downstream or leave a flag on a point that got no verdict.
func (a *attrNames) strip(attrs pcommon.Map) {
	attrs.RemoveIf(func(k string, _ pcommon.Value) bool { return a.IsVerdict(k) })
}

// write puts a scored point's verdict on its datapoint. Every scored point
// gets the score and the flag; the explanation and incident attributes only
// appear where they say something, to keep the common case small.
// Transitions are recorded in the process's incident ledger, which the
// anomalyevents connector asks before it reports one.
func (a *attrNames) write(attrs pcommon.Map, v *detector.Verdict) {
	attrs.EnsureCapacity(attrs.Len() + 2) // one allocation for both, not two
	attrs.PutDouble(a.Score, v.Score)
	attrs.PutBool(a.Detected, v.Anomaly)
	if v.Anomaly {
		attrs.PutDouble(a.Threshold, v.Threshold)
		if v.HasExpected {
			attrs.PutDouble(a.ExpectedMin, v.ExpectedMin)
			attrs.PutDouble(a.ExpectedMax, v.ExpectedMax)
		}
	}
	if v.IncidentID != 0 {
		attrs.PutStr(a.IncidentID, verdict.FormatID(v.IncidentID))
	}
	switch v.Incident {
	case detector.Started:
		verdict.Opened(v.IncidentID)
		attrs.PutStr(a.Incident, verdict.Started)
	case detector.Ended:
		verdict.Closed(v.IncidentID)
		attrs.PutStr(a.Incident, verdict.Ended)
		attrs.PutDouble(a.IncidentDuration, time.Duration(v.IncidentDuration).Seconds())
		attrs.PutDouble(a.IncidentPeak, v.IncidentPeak)
	}
}

// scoreMetrics are the gauges written for one source metric in metric mode.
type scoreMetrics struct {
	score pmetric.NumberDataPointSlice
}

func newScoreMetrics(dst pmetric.MetricSlice, src pmetric.Metric, suffix string) *scoreMetrics {
	m := dst.AppendEmpty()
	m.SetName(src.Name() + suffix)
	m.SetDescription("Anomaly score of " + src.Name() + " from the iforest processor, in [0,1]; higher is more anomalous.")
	m.SetUnit("1")
	return &scoreMetrics{score: m.SetEmptyGauge().DataPoints()}
}

func (s *scoreMetrics) add(attrs pcommon.Map, start, ts pcommon.Timestamp, v detector.Verdict) {
	dp := s.score.AppendEmpty()
	attrs.CopyTo(dp.Attributes())
	dp.SetStartTimestamp(start)
	dp.SetTimestamp(ts)
	dp.SetDoubleValue(v.Score)
}
