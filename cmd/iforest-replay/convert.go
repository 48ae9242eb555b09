package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/otel-iforest/iforest/internal/csvrow"
)

// scopeName is the default instrumentation scope of the replayed metrics.
const scopeName = "github.com/otel-iforest/iforest/cmd/iforest-replay"

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
	ts, err := csvrow.ParseTime(rec[cr.tsIndex])
	if err != nil {
		return row{}, fmt.Errorf("line %d: %w", cr.line, err)
	}
	cells := make([]string, len(cr.indexes))
	for j, i := range cr.indexes {
		cells[j] = rec[i]
	}
	return row{Line: cr.line, Time: ts, Cells: cells}, nil
}

// conversion is the result of rowsToMetrics.
type conversion struct {
	Metrics    pmetric.Metrics
	DataPoints int // datapoints in Metrics
	Skipped    int // cells that were empty or non-numeric
}

// rowsToMetrics converts rows into one pmetric.Metrics with a single resource
// (carrying res) and a single scope (named scope). Each mapping becomes one gauge metric
// whose datapoints are the rows' values in row order, timestamped with the
// row's time. Cells that are empty or non-numeric produce no datapoint and
// are counted in Skipped; a metric left without datapoints is omitted.
func rowsToMetrics(rows []row, mappings []mapping, res []attribute, scope string) conversion {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	attrs := rm.Resource().Attributes()
	attrs.EnsureCapacity(len(res))
	for _, a := range res {
		attrs.PutStr(a.Key, a.Value)
	}
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName(scope)

	out := conversion{Metrics: md}
	for j, m := range mappings {
		var dps pmetric.NumberDataPointSlice
		created := false
		for _, r := range rows {
			v, ok := csvrow.ParseValue(r.Cells[j])
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
