package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/otel-iforest/iforest/internal/csvrow"
)

// What replay and backtest put around the values of a CSV (and backtest
// around the series of a Prometheus document): a series' identity, hence
// its model's random stream, includes them.
const (
	replayServiceName = "iforest-eval-replay"
	replayScopeName   = "github.com/otel-iforest/iforest/cmd/iforest-eval"
)

// replayOptions say which columns of the CSV to replay.
type replayOptions struct {
	// Columns are the value columns, each replayed as a gauge of that name;
	// nil means every column but TimestampColumn, in file order.
	Columns []string
	// TimestampColumn holds the row times; "" means "timestamp".
	TimestampColumn string
}

// csvRows reads a CSV (header line, a timestamp column, value columns) as
// the batches replay feeds the processor: one batch per row, holding one
// gauge datapoint per numeric cell, named like its column, all on one
// resource (service.name=iforest-eval-replay), timestamped with the row's
// time.
type csvRows struct {
	cr      *csv.Reader
	header  []string
	tsIndex int
	cols    []string // value columns, in replay order
	idx     []int    // their positions in a record
}

// csvRow is one data row as a batch.
type csvRow struct {
	line      int
	timestamp string // as in the input
	time      time.Time
	md        pmetric.Metrics
	points    int      // datapoints in md
	bad       []string // cells that are neither empty nor a finite number
}

// rowError is a problem with one row; the rows after it can still be read.
type rowError struct {
	line int
	err  error
}

func (e *rowError) Error() string { return fmt.Sprintf("line %d: %v", e.line, e.err) }
func (e *rowError) Unwrap() error { return e.err }

// newCSVRows reads the header and checks the columns o names.
func newCSVRows(in io.Reader, o replayOptions) (*csvRows, error) {
	if o.TimestampColumn == "" {
		o.TimestampColumn = "timestamp"
	}
	cr := csv.NewReader(in)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("empty CSV: no header line")
	}
	if err != nil {
		return nil, fmt.Errorf("reading header: %w", err)
	}
	header = slices.Clone(header)
	pos := map[string]int{}
	for i, h := range header {
		h = strings.TrimSpace(h)
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff") // UTF-8 BOM
		}
		header[i] = h
		if _, dup := pos[h]; dup {
			return nil, fmt.Errorf("column %q appears twice in the header", h)
		}
		pos[h] = i
	}
	tsIndex, ok := pos[o.TimestampColumn]
	if !ok {
		return nil, fmt.Errorf("no %q column in header %q", o.TimestampColumn, strings.Join(header, ","))
	}
	cols := o.Columns
	if cols == nil {
		for _, h := range header {
			if h != o.TimestampColumn {
				cols = append(cols, h)
			}
		}
	}
	if len(cols) == 0 {
		return nil, errors.New("no value columns")
	}
	idx := make([]int, len(cols))
	for j, c := range cols {
		i, ok := pos[c]
		switch {
		case !ok:
			return nil, fmt.Errorf("no %q column in header %q", c, strings.Join(header, ","))
		case i == tsIndex:
			return nil, fmt.Errorf("column %q is the timestamp column", c)
		case slices.Contains(cols[:j], c):
			return nil, fmt.Errorf("column %q named twice", c)
		}
		idx[j] = i
	}
	return &csvRows{cr: cr, header: header, tsIndex: tsIndex, cols: cols, idx: idx}, nil
}

// next returns the next row, io.EOF after the last. A *rowError is about
// that row alone.
func (c *csvRows) next() (csvRow, error) {
	rec, err := c.cr.Read()
	if err != nil {
		if pe := (*csv.ParseError)(nil); errors.As(err, &pe) {
			return csvRow{}, &rowError{line: pe.Line, err: pe.Err}
		}
		return csvRow{}, err
	}
	line, _ := c.cr.FieldPos(0)
	if len(rec) != len(c.header) {
		return csvRow{}, &rowError{line: line, err: fmt.Errorf("%d fields, the header has %d", len(rec), len(c.header))}
	}
	ts, err := csvrow.ParseTime(rec[c.tsIndex])
	if err != nil {
		return csvRow{}, &rowError{line: line, err: err}
	}
	r := csvRow{line: line, timestamp: strings.TrimSpace(rec[c.tsIndex]), time: ts, md: pmetric.NewMetrics()}
	rm := r.md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", replayServiceName)
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName(replayScopeName)
	for j, col := range c.cols {
		v, ok := csvrow.ParseValue(rec[c.idx[j]])
		if !ok {
			if cell := strings.TrimSpace(rec[c.idx[j]]); cell != "" {
				r.bad = append(r.bad, fmt.Sprintf("column %q: %q is not a finite number", col, cell))
			}
			continue // empty or not a number: no datapoint
		}
		m := sm.Metrics().AppendEmpty()
		m.SetName(col)
		dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
		dp.SetTimestamp(pcommon.NewTimestampFromTime(ts))
		dp.SetDoubleValue(v)
		r.points++
	}
	return r, nil
}
