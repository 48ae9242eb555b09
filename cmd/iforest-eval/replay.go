package main

import (
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/otel-iforest/iforest/internal/csvrow"
	"github.com/otel-iforest/iforest/internal/metadata"
	iforestprocessor "github.com/otel-iforest/iforest/processor"
)

// What the replay command puts around the replayed values.
const (
	replayServiceName = "iforest-eval-replay"
	replayScopeName   = "github.com/otel-iforest/iforest/cmd/iforest-eval"
)

// runReplay implements "iforest-eval replay": it runs a CSV through the
// real processor, built by the factory from a processor config file, and
// writes each row's verdicts.
func runReplay(args []string) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	cfgPath := fs.String("config", "", "YAML `FILE` with the processor's settings only, e.g. examples/seed-cpu-memory.yaml (default: the processor's defaults)")
	csvPath := fs.String("csv", "", "input CSV `FILE` with a header line (required)")
	out := fs.String("out", "", "output CSV `FILE`, - for stdout (required)")
	columns := fs.String("columns", "", "value columns to replay, `a,b,...` (default: every column but the timestamp column)")
	tsColumn := fs.String("timestamp-column", "timestamp", "`column` holding the row time (YYYY-MM-DD HH:MM:SS or RFC 3339, UTC)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: iforest-eval replay -csv F.csv -out OUT.csv [-config CFG.yaml] [-columns a,b]

Runs the rows of F.csv through the iforest processor built by its factory
with the settings in CFG.yaml (the processor's settings only, as under
processors: iforest: in a collector config). Each value column becomes a
gauge metric named like the column; every row is one batch (one
ConsumeMetrics call) holding one datapoint per non-empty numeric cell, all
on one resource (service.name=`+replayServiceName+`), timestamped with the
row's time.

OUT.csv has one line per input row: the row's timestamp, then for each
model (in config order) <model>.score,<model>.detected,<model>.top_feature,
then for each column scored on its own (in input order)
<column>.score,<column>.detected. Cells stay empty while there is no
verdict (warm-up, incomplete vector); top_feature is set on flagged rows.

flags:
`)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() != 0:
		return usagef("replay: unexpected arguments %q", fs.Args())
	case *csvPath == "" || *out == "":
		fs.Usage()
		return usagef("replay: -csv and -out are required")
	}
	var cols []string
	if *columns != "" {
		for c := range strings.SplitSeq(*columns, ",") {
			if c = strings.TrimSpace(c); c != "" {
				cols = append(cols, c)
			}
		}
		if len(cols) == 0 {
			return usagef("replay: -columns names no column")
		}
	}
	cfg, err := loadProcessorConfig(*cfgPath)
	if err != nil {
		return err
	}
	in, err := os.Open(*csvPath)
	if err != nil {
		return err
	}
	defer in.Close()
	tab, err := replayCSV(context.Background(), cfg, in, replayOptions{Columns: cols, TimestampColumn: *tsColumn})
	if err != nil {
		return fmt.Errorf("%s: %w", *csvPath, err)
	}
	if *out == "-" {
		return tab.writeCSV(os.Stdout)
	}
	fh, err := os.Create(*out)
	if err != nil {
		return err
	}
	if err := tab.writeCSV(fh); err != nil {
		fh.Close()
		return fmt.Errorf("%s: %w", *out, err)
	}
	return fh.Close()
}

// replayOptions say which columns of the CSV to replay.
type replayOptions struct {
	// Columns are the value columns, each replayed as a gauge of that name;
	// nil means every column but TimestampColumn, in file order.
	Columns []string
	// TimestampColumn holds the row times; "" means "timestamp".
	TimestampColumn string
}

// verdict is what the processor said about one row, for one model or one
// column.
type verdict struct {
	Scored     bool
	Score      float64
	Detected   bool
	TopFeature string // models only, on flagged rows
}

// replayRow is one input row and its verdicts.
type replayRow struct {
	Timestamp string // as in the input
	Time      time.Time
	Models    []verdict // per replayTable.Models
	Columns   []verdict // per replayTable.Univariate
}

// replayTable is the result of a replay.
type replayTable struct {
	Models     []string // model names, in config order
	Univariate []string // columns scored on their own, in input order
	Rows       []replayRow
}

// model returns the index of the named model, or -1.
func (t *replayTable) model(name string) int { return slices.Index(t.Models, name) }

// replayCSV streams the CSV in through a processor built by the factory
// with cfg and collects every row's verdicts.
func replayCSV(ctx context.Context, cfg *iforestprocessor.Config, in io.Reader, o replayOptions) (*replayTable, error) {
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

	tab := &replayTable{}
	for i := range cfg.Models {
		tab.Models = append(tab.Models, cfg.Models[i].Name)
	}
	predicted, err := univariateColumns(cfg, cols)
	if err != nil {
		return nil, err
	}

	// The sink reads the verdicts off the single batch in flight.
	prefix := cfg.Output.AttributePrefix
	names := attrNames{
		score: prefix + "score", detected: prefix + "detected",
		model: prefix + "model", topFeature: prefix + "top_feature",
	}
	var got rowVerdicts
	sink, err := consumer.NewMetrics(func(_ context.Context, md pmetric.Metrics) error {
		got = readVerdicts(md, &names)
		return nil
	})
	if err != nil {
		return nil, err
	}
	p, err := iforestprocessor.NewFactory().CreateMetrics(ctx, processortest.NewNopSettings(metadata.Type), cfg, sink)
	if err != nil {
		return nil, err
	}
	if err := p.Start(ctx, componenttest.NewNopHost()); err != nil {
		return nil, err
	}
	defer p.Shutdown(ctx) //nolint:errcheck // nothing to do about it here

	var rows []rowVerdicts
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err // csv errors carry the line number
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != len(header) {
			return nil, fmt.Errorf("line %d: %d fields, the header has %d", line, len(rec), len(header))
		}
		ts, err := csvrow.ParseTime(rec[tsIndex])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		md := pmetric.NewMetrics()
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("service.name", replayServiceName)
		sm := rm.ScopeMetrics().AppendEmpty()
		sm.Scope().SetName(replayScopeName)
		for j, c := range cols {
			v, ok := csvrow.ParseValue(rec[idx[j]])
			if !ok {
				continue // empty or not a number: no datapoint
			}
			m := sm.Metrics().AppendEmpty()
			m.SetName(c)
			dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
			dp.SetTimestamp(pcommon.NewTimestampFromTime(ts))
			dp.SetDoubleValue(v)
		}
		got = rowVerdicts{}
		if sm.Metrics().Len() > 0 {
			if err := p.ConsumeMetrics(ctx, md); err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
		}
		got.timestamp, got.time = strings.TrimSpace(rec[tsIndex]), ts
		rows = append(rows, got)
	}

	// Columns scored on their own: those the config says, plus any other
	// the processor scored after all, so no verdict is dropped.
	for _, c := range cols {
		if predicted[c] {
			tab.Univariate = append(tab.Univariate, c)
			continue
		}
		for _, r := range rows {
			if _, ok := r.columns[c]; ok {
				tab.Univariate = append(tab.Univariate, c)
				break
			}
		}
	}
	tab.Rows = make([]replayRow, len(rows))
	for i, r := range rows {
		out := replayRow{
			Timestamp: r.timestamp,
			Time:      r.time,
			Models:    make([]verdict, len(tab.Models)),
			Columns:   make([]verdict, len(tab.Univariate)),
		}
		for k, name := range tab.Models {
			out.Models[k] = r.models[name]
		}
		for k, c := range tab.Univariate {
			out.Columns[k] = r.columns[c]
		}
		tab.Rows[i] = out
	}
	return tab, nil
}

// univariateColumns says which replayed columns the processor scores on
// their own: with univariate on, those its metrics selection picks that no
// model feature takes. Replayed datapoints have no attributes, so a feature
// takes every datapoint of its metric unless it has a where condition
// (which then never holds); where_not always holds.
func univariateColumns(cfg *iforestprocessor.Config, cols []string) (map[string]bool, error) {
	out := map[string]bool{}
	if !cfg.Univariate {
		return out, nil
	}
	compile := func(ps []string) ([]*regexp.Regexp, error) {
		var res []*regexp.Regexp
		for _, p := range ps {
			re, err := regexp.Compile(`^(?:` + p + `)$`)
			if err != nil {
				return nil, err
			}
			res = append(res, re)
		}
		return res, nil
	}
	include, err := compile(cfg.Metrics.Include)
	if err != nil {
		return nil, err
	}
	exclude, err := compile(cfg.Metrics.Exclude)
	if err != nil {
		return nil, err
	}
	matches := func(res []*regexp.Regexp, s string) bool {
		return slices.ContainsFunc(res, func(re *regexp.Regexp) bool { return re.MatchString(s) })
	}
	for _, c := range cols {
		taken := false
		for _, m := range cfg.Models {
			for _, f := range m.Features {
				taken = taken || f.Metric == c && len(f.Where) == 0
			}
		}
		selected := (len(include) == 0 || matches(include, c)) && !matches(exclude, c)
		out[c] = selected && !taken
	}
	return out, nil
}

// attrNames are the verdict attributes the replay reads.
type attrNames struct {
	score, detected, model, topFeature string
}

// rowVerdicts are the verdicts found on one row's batch.
type rowVerdicts struct {
	timestamp string
	time      time.Time
	models    map[string]verdict // by model name
	columns   map[string]verdict // by metric (column) name
}

// readVerdicts collects the verdicts written on md's datapoints: those with
// a model attribute are that model's (every datapoint that fed the vector
// carries the same verdict; the first is kept), the others their metric's.
func readVerdicts(md pmetric.Metrics, n *attrNames) rowVerdicts {
	var rv rowVerdicts
	for _, rm := range md.ResourceMetrics().All() {
		for _, sm := range rm.ScopeMetrics().All() {
			for _, m := range sm.Metrics().All() {
				if m.Type() != pmetric.MetricTypeGauge {
					continue
				}
				for _, dp := range m.Gauge().DataPoints().All() {
					attrs := dp.Attributes()
					sv, ok := attrs.Get(n.score)
					if !ok || sv.Type() != pcommon.ValueTypeDouble {
						continue
					}
					v := verdict{Scored: true, Score: sv.Double()}
					if d, ok := attrs.Get(n.detected); ok && d.Type() == pcommon.ValueTypeBool {
						v.Detected = d.Bool()
					}
					if mv, ok := attrs.Get(n.model); ok {
						if tf, ok := attrs.Get(n.topFeature); ok && v.Detected {
							v.TopFeature = tf.AsString()
						}
						if rv.models == nil {
							rv.models = map[string]verdict{}
						}
						if _, seen := rv.models[mv.AsString()]; !seen {
							rv.models[mv.AsString()] = v
						}
						continue
					}
					if rv.columns == nil {
						rv.columns = map[string]verdict{}
					}
					if _, seen := rv.columns[m.Name()]; !seen {
						rv.columns[m.Name()] = v
					}
				}
			}
		}
	}
	return rv
}

// header is the output CSV's header line.
func (t *replayTable) header() []string {
	h := []string{"timestamp"}
	for _, m := range t.Models {
		h = append(h, m+".score", m+".detected", m+".top_feature")
	}
	for _, c := range t.Univariate {
		h = append(h, c+".score", c+".detected")
	}
	return h
}

// writeCSV writes the table: scores with as many digits as it takes to
// read them back exactly, detected as true/false, empty cells where there
// is no verdict.
func (t *replayTable) writeCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(t.header()); err != nil {
		return err
	}
	rec := make([]string, 0, len(t.header()))
	cells := func(v verdict, top bool) {
		if !v.Scored {
			rec = append(rec, "", "")
			if top {
				rec = append(rec, "")
			}
			return
		}
		rec = append(rec, strconv.FormatFloat(v.Score, 'g', -1, 64), strconv.FormatBool(v.Detected))
		if top {
			rec = append(rec, v.TopFeature)
		}
	}
	for _, r := range t.Rows {
		rec = append(rec[:0], r.Timestamp)
		for _, v := range r.Models {
			cells(v, true)
		}
		for _, v := range r.Columns {
			cells(v, false)
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
