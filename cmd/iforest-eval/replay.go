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

	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	iforestprocessor "github.com/otel-iforest/iforest/processor"
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
	rows, err := newCSVRows(in, o)
	if err != nil {
		return nil, err
	}
	tab := &replayTable{}
	for i := range cfg.Models {
		tab.Models = append(tab.Models, cfg.Models[i].Name)
	}
	predicted, err := univariateColumns(cfg, rows.cols)
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
	p, err := startProcessor(ctx, cfg, sink)
	if err != nil {
		return nil, err
	}
	defer p.stop(ctx) //nolint:errcheck // nothing to do about it here

	var verdicts []rowVerdicts
	for {
		row, err := rows.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err // row errors carry the line number
		}
		got = rowVerdicts{}
		if row.points > 0 {
			if err := p.ConsumeMetrics(ctx, row.md); err != nil {
				return nil, fmt.Errorf("line %d: %w", row.line, err)
			}
		}
		got.timestamp, got.time = row.timestamp, row.time
		verdicts = append(verdicts, got)
	}

	// Columns scored on their own: those the config says, plus any other
	// the processor scored after all, so no verdict is dropped.
	for _, c := range rows.cols {
		if predicted[c] {
			tab.Univariate = append(tab.Univariate, c)
			continue
		}
		for _, r := range verdicts {
			if _, ok := r.columns[c]; ok {
				tab.Univariate = append(tab.Univariate, c)
				break
			}
		}
	}
	tab.Rows = make([]replayRow, len(verdicts))
	for i, r := range verdicts {
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
