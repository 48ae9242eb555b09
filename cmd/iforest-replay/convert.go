package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// scopeName is the instrumentation scope of every replayed metric.
const scopeName = "github.com/otel-iforest/iforest/cmd/iforest-replay"

// timestampLayout is the CSV timestamp format (NAB style), interpreted as UTC.
// Fractional seconds are accepted too (time.Parse allows them after "05").
const timestampLayout = "2006-01-02 15:04:05"

// mapping says which CSV column becomes which metric.
type mapping struct {
	Column string
	Metric string
}

// attribute is one resource attribute, kept in flag order.
type attribute struct {
	Key, Value string
}

// row is one CSV data row reduced to what the conversion needs: its time and
// one raw cell per mapping, in mapping order.
type row struct {
	Line  int // 1-based line number in the file, for messages
	Time  time.Time
	Cells []string
}

// csvReader reads rows from a CSV file with a header line.
type csvReader struct {
	r       *csv.Reader
	tsIndex int
	indexes []int // column index per mapping
	line    int
}

// newCSVReader reads the header and locates the timestamp column and the
// mapped value columns.
func newCSVReader(in io.Reader, timestampColumn string, mappings []mapping) (*csvReader, error) {
	r := csv.NewReader(in)
	r.FieldsPerRecord = -1 // checked per row with a better message
	r.TrimLeadingSpace = true
	r.ReuseRecord = true
	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("empty CSV: no header line")
	}
	if err != nil {
		return nil, fmt.Errorf("reading header: %w", err)
	}
	pos := make(map[string]int, len(header))
	for i, h := range header {
		h = strings.TrimSpace(h)
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff") // UTF-8 BOM
		}
		if _, dup := pos[h]; !dup {
			pos[h] = i
		}
	}
	cr := &csvReader{r: r, line: 1}
	var ok bool
	if cr.tsIndex, ok = pos[timestampColumn]; !ok {
		return nil, fmt.Errorf("no %q column in header %q", timestampColumn, strings.Join(header, ","))
	}
	for _, m := range mappings {
		i, ok := pos[m.Column]
		if !ok {
			return nil, fmt.Errorf("no %q column in header %q", m.Column, strings.Join(header, ","))
		}
		cr.indexes = append(cr.indexes, i)
	}
	return cr, nil
}

// next returns the next data row, or io.EOF after the last one. Blank lines
// are skipped by encoding/csv. A row whose timestamp cannot be parsed or that
// is too short to hold a mapped column is an error: the file is malformed.
func (cr *csvReader) next() (row, error) {
	rec, err := cr.r.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return row{}, io.EOF
		}
		return row{}, err
	}
	cr.line, _ = cr.r.FieldPos(0)
	need := cr.tsIndex
	for _, i := range cr.indexes {
		need = max(need, i)
	}
	if len(rec) <= need {
		return row{}, fmt.Errorf("line %d: %d fields, need at least %d", cr.line, len(rec), need+1)
	}
	ts, err := parseTimestamp(rec[cr.tsIndex])
	if err != nil {
		return row{}, fmt.Errorf("line %d: %w", cr.line, err)
	}
	cells := make([]string, len(cr.indexes))
	for j, i := range cr.indexes {
		cells[j] = rec[i]
	}
	return row{Line: cr.line, Time: ts, Cells: cells}, nil
}

// parseTimestamp parses "YYYY-MM-DD HH:MM:SS" as UTC; RFC 3339 is accepted too.
func parseTimestamp(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.ParseInLocation(timestampLayout, s, time.UTC); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("bad timestamp %q: want %q (UTC)", s, timestampLayout)
}

// parseValue parses a cell. Empty, non-numeric, NaN and infinite cells are not
// values.
func parseValue(s string) (float64, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, false
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false
	}
	return v, true
}

// conversion is the result of rowsToMetrics.
type conversion struct {
	Metrics    pmetric.Metrics
	DataPoints int // datapoints in Metrics
	Skipped    int // cells that were empty or non-numeric
}

// rowsToMetrics converts rows into one pmetric.Metrics with a single resource
// (carrying res) and a single scope. Each mapping becomes one gauge metric
// whose datapoints are the rows' values in row order, timestamped with the
// row's time. Cells that are empty or non-numeric produce no datapoint and
// are counted in Skipped; a metric left without datapoints is omitted.
func rowsToMetrics(rows []row, mappings []mapping, res []attribute) conversion {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	attrs := rm.Resource().Attributes()
	attrs.EnsureCapacity(len(res))
	for _, a := range res {
		attrs.PutStr(a.Key, a.Value)
	}
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName(scopeName)

	out := conversion{Metrics: md}
	for j, m := range mappings {
		var dps pmetric.NumberDataPointSlice
		created := false
		for _, r := range rows {
			v, ok := parseValue(r.Cells[j])
			if !ok {
				out.Skipped++
				continue
			}
			if !created {
				created = true
				metric := sm.Metrics().AppendEmpty()
				metric.SetName(m.Metric)
				dps = metric.SetEmptyGauge().DataPoints()
				dps.EnsureCapacity(len(rows))
			}
			dp := dps.AppendEmpty()
			dp.SetTimestamp(pcommon.NewTimestampFromTime(r.Time))
			dp.SetDoubleValue(v)
			out.DataPoints++
		}
	}
	return out
}
