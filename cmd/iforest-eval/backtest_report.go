package main

import (
	_ "embed"
	"encoding/json"
	"html/template"
	"io"
	"math"
	"strconv"
	"strings"

	"go.opentelemetry.io/collector/pdata/pmetric"
)

//go:embed backtest_report.html
var btReportHTML string

var btReportTemplate = template.Must(template.New("report").Parse(btReportHTML))

// btPage is what the report template is given.
type btPage struct {
	S            *btResultSummary
	Compare      bool
	NameA, NameB string
	Inputs       string
	Rows         []btSumRow
	Telemetry    []btTelRow
	Top          []btTop
	Data         template.JS
}

// btSumRow is one line of the summary table.
type btSumRow struct {
	ID, Label, A, B, Delta string
}

// btTelRow is one self-telemetry value under each config.
type btTelRow struct {
	Metric, Attrs, A, B string
}

// btData is the data the report's script draws from; times are
// milliseconds after T0.
type btData struct {
	T0        int64          `json:"t0"` // unix milliseconds
	T1        int64          `json:"t1"`
	Compare   bool           `json:"cmp"`
	Threshold float64        `json:"thr"` // the first config's fixed threshold; 0 with contamination
	Names     []string       `json:"names"`
	Series    []btSeriesData `json:"s"`
}

// btSeriesData is one series in the report, in short keys: the data of
// 10,000 series is most of the file.
type btSeriesData struct {
	Name     string    `json:"n"`
	Resource string    `json:"r,omitempty"`
	Kind     string    `json:"k"`
	Counts   [4]int64  `json:"c"`            // points, scored, flagged, incidents
	CountsB  *[2]int64 `json:"cb,omitempty"` // flagged, incidents under the second config
	From     int64     `json:"f"`
	To       int64     `json:"t"`
	Lo       float64   `json:"lo"` // the value range the trace is quantised over
	Hi       float64   `json:"hi"`
	Trace    string    `json:"tr,omitempty"` // see encodeTrace
	Flags    [][]any   `json:"fl,omitempty"` // [t, value, score, expected min|null, max|null]
	Inc      [][]any   `json:"in,omitempty"` // [start, end|null, peak, id]
	FlagsB   [][]any   `json:"flb,omitempty"`
	IncB     [][]any   `json:"inb,omitempty"`
	More     []int64   `json:"more,omitempty"` // flagged points, incidents not kept (A, then B)
}

// r6 keeps 6 significant digits; NaN and infinities become null.
func r6(x float64) any {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	v, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'g', 6, 64), 64)
	return v
}

func kindName(k pmetric.MetricType) string {
	switch k {
	case pmetric.MetricTypeExponentialHistogram:
		return "exponential histogram"
	case pmetric.MetricTypeHistogram, pmetric.MetricTypeSummary:
		return strings.ToLower(k.String()) + " (mean observation drawn)"
	}
	return strings.ToLower(k.String())
}

// fmtCount writes an integer with thousands separators.
func fmtCount(n int64) string {
	s := strconv.FormatInt(max(n, -n), 10)
	var b strings.Builder
	if n < 0 {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// fmtFloat writes x as it is, with thousands separators in its whole part.
func fmtFloat(x float64) string {
	s := strconv.FormatFloat(x, 'f', -1, 64)
	whole, frac, dot := strings.Cut(s, ".")
	n, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return s
	}
	whole = fmtCount(n)
	if n == 0 && strings.HasPrefix(s, "-") {
		whole = "-0"
	}
	if dot {
		return whole + "." + frac
	}
	return whole
}

func fmtDelta(a, b float64) string {
	switch d := b - a; {
	case d > 0:
		return "+" + strconv.FormatFloat(d, 'g', 4, 64)
	case d < 0:
		return strconv.FormatFloat(d, 'g', 4, 64)
	}
	return "="
}

// writeReport writes the HTML report: the summary as HTML, the series as
// data that the page's script draws a page at a time.
func writeReport(w io.Writer, res *btResult) error {
	s := res.Summary
	page := &btPage{S: s, Compare: s.Compare != nil, NameA: s.Config, Inputs: strings.Join(s.Inputs, ", "), Top: s.Top}
	var b *btSummary
	if page.Compare {
		page.NameB = s.Compare.Config
		b = &s.Compare.btSummary
	}
	row := func(id, label string, a func(*btSummary) float64, format func(float64) string) {
		r := btSumRow{ID: id, Label: label, A: format(a(&s.btSummary))}
		if b != nil {
			r.B, r.Delta = format(a(b)), fmtDelta(a(&s.btSummary), a(b))
		}
		page.Rows = append(page.Rows, r)
	}
	count := func(x float64) string { return fmtCount(int64(x)) }
	row("series", "series", func(x *btSummary) float64 { return float64(x.Series) }, count)
	row("points", "points", func(x *btSummary) float64 { return float64(x.Points) }, count)
	row("scored", "points scored", func(x *btSummary) float64 { return float64(x.Scored) }, count)
	row("flagged", "points flagged", func(x *btSummary) float64 { return float64(x.Flagged) }, count)
	row("incidents", "incidents", func(x *btSummary) float64 { return float64(x.Incidents) }, count)
	row("series_with_incidents", "series with incidents", func(x *btSummary) float64 { return float64(x.SeriesWithIncidents) }, count)
	row("series_days", "series-days of data", func(x *btSummary) float64 { return x.SeriesDays }, fmtFloat)
	row("incidents_per_series_day", "incidents per series per day", func(x *btSummary) float64 { return x.IncidentsPerSeriesDay }, fmtFloat)
	page.Telemetry = telemetryRows(s.Telemetry, b)

	data := btData{Compare: page.Compare, Names: []string{s.Config}}
	if page.Compare {
		data.Names = append(data.Names, b.Config)
	}
	if res.A.cfg.Contamination == 0 {
		data.Threshold = res.A.cfg.Threshold
	}
	from, to := timeRange(res.A)
	data.T0, data.T1 = from/1e6, to/1e6-from/1e6
	ms := func(ns int64) int64 { return ns/1e6 - data.T0 }
	for i, ser := range res.Table.list {
		st := res.A.stats[i]
		d := btSeriesData{Name: ser.name(), Resource: resourceText(ser), Kind: kindName(ser.kind),
			Counts: [4]int64{st.points, st.scored, st.flagged, st.incidents}, From: ms(st.from), To: ms(st.to)}
		d.Lo, d.Hi = st.lo, st.hi
		for _, f := range st.flags {
			d.Flags = append(d.Flags, []any{ms(f.T), r6(f.V), r6(f.Score), r6(f.Min), r6(f.Max)})
			if !math.IsNaN(f.Min) && !math.IsInf(f.Min, 0) {
				d.Lo = min(d.Lo, f.Min)
			}
			if !math.IsNaN(f.Max) && !math.IsInf(f.Max, 0) {
				d.Hi = max(d.Hi, f.Max)
			}
		}
		d.Inc = incidentData(st.incs, ms)
		if d.Lo > d.Hi { // no finite value
			d.Lo, d.Hi = 0, 1
		}
		if d.Lo == d.Hi {
			pad := max(math.Abs(d.Lo)*0.05, 0.5)
			d.Lo, d.Hi = d.Lo-pad, d.Hi+pad
		}
		if st.trace != nil {
			d.Trace = encodeTrace(st.trace.buckets(), st.from, st.to, d.Lo, d.Hi)
		}
		more := []int64{st.moreFlags, st.moreIncs}
		if page.Compare {
			var sb *btStats
			if i < len(res.B.stats) {
				sb = res.B.stats[i]
			}
			if sb != nil {
				d.CountsB = &[2]int64{sb.flagged, sb.incidents}
				for _, f := range sb.flags {
					d.FlagsB = append(d.FlagsB, []any{ms(f.T), r6(f.V), r6(f.Score)})
				}
				d.IncB = incidentData(sb.incs, ms)
				more = append(more, sb.moreFlags, sb.moreIncs)
			} else {
				d.CountsB = &[2]int64{}
			}
		}
		if slicesAny(more) {
			d.More = more
		}
		d.Lo, d.Hi = r6f(d.Lo), r6f(d.Hi)
		data.Series = append(data.Series, d)
	}
	js, err := json.Marshal(data) // escapes <, > and &: safe inside <script>
	if err != nil {
		return err
	}
	page.Data = template.JS(js)
	return btReportTemplate.Execute(w, page)
}

// r6f is r6 for a value known to be finite.
func r6f(x float64) float64 {
	v, _ := r6(x).(float64)
	return v
}

func slicesAny(xs []int64) bool {
	for _, x := range xs {
		if x != 0 {
			return true
		}
	}
	return false
}

func resourceText(s *btSeries) string {
	parts := []string{}
	if s.resource != "" {
		parts = append(parts, s.resource)
	}
	if s.scope != "" {
		parts = append(parts, "scope "+s.scope)
	}
	return strings.Join(parts, " · ")
}

func incidentData(incs []btIncident, ms func(int64) int64) [][]any {
	var out [][]any
	for _, in := range incs {
		var end any
		if in.End != 0 {
			end = ms(in.End)
		}
		out = append(out, []any{ms(in.Start), end, r6(in.Peak), in.ID})
	}
	return out
}

// telemetryRows lines up the self-telemetry of both configs by metric and
// attributes.
func telemetryRows(a []telemetryCount, b *btSummary) []btTelRow {
	short := func(m string) string { return strings.TrimPrefix(m, "otelcol_processor_iforest_") }
	val := func(c telemetryCount) string {
		if c.Value == math.Trunc(c.Value) && math.Abs(c.Value) < 1e15 {
			return fmtCount(int64(c.Value))
		}
		return strconv.FormatFloat(c.Value, 'g', 6, 64)
	}
	var rows []btTelRow
	index := map[string]int{}
	for _, c := range a {
		k := c.Metric + "\x00" + c.attrString()
		index[k] = len(rows)
		rows = append(rows, btTelRow{Metric: short(c.Metric), Attrs: c.attrString(), A: val(c), B: "0"})
	}
	if b == nil {
		return rows
	}
	for _, c := range b.Telemetry {
		k := c.Metric + "\x00" + c.attrString()
		if i, ok := index[k]; ok {
			rows[i].B = val(c)
			continue
		}
		rows = append(rows, btTelRow{Metric: short(c.Metric), Attrs: c.attrString(), A: "0", B: val(c)})
	}
	return rows
}
