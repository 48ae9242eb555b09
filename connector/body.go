package anomalyeventsconnector

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// The bodies are for people: one line that says which series, what it did
// and why the model thinks so. Machines read the attributes.

// anomalousBody is the body of started and detected events:
//
//	system.cpu.utilization{cpu=cpu0} = 0.93 is anomalous (score 0.81 >= 0.70; normal 0.18-0.52)
func anomalousBody(metricName string, p point, prefix string, v verdictView) string {
	var sb strings.Builder
	writeSeries(&sb, metricName, p.attrs, prefix)
	switch {
	case p.hasCount:
		sb.WriteString(" = count ")
		sb.WriteString(strconv.FormatUint(p.count, 10))
		if p.hasValue {
			sb.WriteString(", mean ")
			sb.WriteString(formatNumber(p.value))
		}
	case p.hasValue:
		sb.WriteString(" = ")
		sb.WriteString(formatNumber(p.value))
	}
	sb.WriteString(" is anomalous")

	var details []string
	if v.score.ok {
		s := "score " + formatScore(v.score.v)
		if v.threshold.ok {
			s += " >= " + formatScore(v.threshold.v)
		}
		details = append(details, s)
	}
	if v.expectedMin.ok && v.expectedMax.ok {
		r := formatRange(v.expectedMin.v, v.expectedMax.v)
		if p.hasValue && !p.hasCount && p.value >= v.expectedMin.v && p.value <= v.expectedMax.v {
			// Flagged for where it stands (a run of unusual points, a
			// departure from the points just before), not for its value
			// alone: say so, or the line reads as a contradiction.
			details = append(details, "unusual in context; its value is within normal "+r)
		} else {
			details = append(details, "normal "+r)
		}
	}
	switch {
	case v.contributions != "":
		// Multivariate models: every feature's share, largest first.
		details = append(details, "model "+v.model+": "+v.contributions)
	case v.topFeature != "":
		details = append(details, "top feature "+v.topFeature)
	}
	if len(details) > 0 {
		sb.WriteString(" (")
		sb.WriteString(strings.Join(details, "; "))
		sb.WriteByte(')')
	}
	return sb.String()
}

// endedBody is the body of ended events:
//
//	system.cpu.utilization{cpu=cpu0} is back to normal after 5m0s (peak score 0.91)
func endedBody(metricName string, attrs pcommon.Map, prefix string, v verdictView) string {
	var sb strings.Builder
	writeSeries(&sb, metricName, attrs, prefix)
	sb.WriteString(" is back to normal")
	if v.duration.ok {
		sb.WriteString(" after ")
		sb.WriteString(formatSeconds(v.duration.v))
	}
	if v.peak.ok {
		sb.WriteString(" (peak score ")
		sb.WriteString(formatScore(v.peak.v))
		sb.WriteByte(')')
	}
	return sb.String()
}

// writeSeries writes name{k=v,...} with the datapoint's own attributes
// (not the prefixed verdict ones) sorted by key; just name when there are
// none.
func writeSeries(sb *strings.Builder, name string, attrs pcommon.Map, prefix string) {
	sb.WriteString(name)
	keys := make([]string, 0, attrs.Len())
	for k := range attrs.All() {
		if !strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return
	}
	slices.Sort(keys)
	sb.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			sb.WriteByte(',')
		}
		v, _ := attrs.Get(k)
		sb.WriteString(k)
		sb.WriteByte('=')
		sb.WriteString(formatValue(v))
	}
	sb.WriteByte('}')
}

// formatValue renders an attribute value compactly.
func formatValue(v pcommon.Value) string {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		return v.Str()
	case pcommon.ValueTypeDouble:
		return formatNumber(v.Double())
	default:
		return v.AsString()
	}
}

// formatNumber renders v with about three significant digits: plain
// decimals between 0.001 and 1e6 (integers up there, e.g. 4096 or 123457),
// exponent notation outside (8.59e+09, 1.2e-05).
func formatNumber(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return strconv.FormatFloat(v, 'g', -1, 64)
	case v == 0:
		return "0"
	}
	a := math.Abs(v)
	if a < 1e-3 || a >= 1e6 {
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
	decimals := max(0, 2-int(math.Floor(math.Log10(a))))
	s := strconv.FormatFloat(v, 'f', decimals, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	if s == "-0" {
		s = "0"
	}
	return s
}

// formatScore renders a score or threshold with two decimals (0.81).
func formatScore(v float64) string {
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// formatRange renders the normal range: 0.18-0.52, or "-3 to 2" when a
// bound is negative so that the dash cannot be read as a minus sign.
func formatRange(lo, hi float64) string {
	if lo < 0 || hi < 0 {
		return formatNumber(lo) + " to " + formatNumber(hi)
	}
	return formatNumber(lo) + "-" + formatNumber(hi)
}

// formatSeconds renders a duration in seconds the Go way (5m0s, 1h2m3s),
// to the second, or to the millisecond below one second.
func formatSeconds(s float64) string {
	if math.IsNaN(s) || math.IsInf(s, 0) || math.Abs(s) > math.MaxInt64/float64(time.Second) {
		return formatNumber(s) + "s"
	}
	d := time.Duration(s * float64(time.Second))
	if d.Abs() >= time.Second {
		return d.Round(time.Second).String()
	}
	return d.Round(time.Millisecond).String()
}
