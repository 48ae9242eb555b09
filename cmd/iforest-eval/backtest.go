package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.opentelemetry.io/collector/pdata/pcommon"

	iforestprocessor "github.com/otel-iforest/iforest/processor"
)

const backtestUsage = `usage: iforest-eval backtest [flags] INPUT...

Runs history you already have through the iforest processor, built by its
factory with your settings, and shows what it would have flagged: a report
(--out report.html, one self-contained file for a browser), a summary for
scripts (--json) and, if asked, every datapoint's verdict (--verdicts).

INPUT files (plain, gzip or zstd; the format is told from the content):
  - OTLP as the collector's file exporter writes it: JSON, one
    ExportMetricsServiceRequest per line, or its length-prefixed records
    (compression: zstd, format: proto). Capture a day with
      exporters: {file: {path: ./capture.jsonl}}
    in the metrics pipeline, then backtest capture.jsonl. Every metric type
    the processor scores is read; resource, scope, metric and attributes
    make a series, as in the collector.
  - the JSON answer of Prometheus' /api/v1/query_range (a matrix):
      curl -o prom.json 'http://prom:9090/api/v1/query_range?query=up&start=...&end=...&step=60'
    __name__ is the metric name; job and instance become the resource's
    service.name and service.instance.id (as the collector's Prometheus
    receiver maps them), the other labels datapoint attributes. Every series
    is read as a gauge: query rate(...) for counters.
  - CSV as "iforest-eval replay" reads it: a timestamp column, each other
    column a gauge, each row one batch.
Several inputs are read one after the other into the same processor (e.g.
one file per day, in time order).

Config: --config takes the processor's settings (as under processors:
iforest:, like examples/seed-cpu-memory.yaml) or a whole collector
configuration with one iforest processor; default: the processor's defaults.
--compare runs the same data under a second config and sets them side by
side. output.mode both is run as attributes (the backtest reads the
attributes); metric is refused.

How the data is fed: each series' points in input order, which must be
time order. Points not after their series' previous point are reported by
series (and file:line) and passed to the processor as they are, which
passes them through unscored (out_of_order), as a collector would. With
per-series models only, series are fed concurrently (GOMAXPROCS workers),
each by one worker in order, in batches of up to 128 of its points: a
series' verdicts do not depend on the others', so this gives the verdicts
a collector would. With models: or high_cardinality, whose models depend on
several series, the input's batches go to the processor as they are, in
order (a Prometheus answer merged by time, one batch per timestamp, which
holds its samples in memory). The
processor's clock is the machine's: series_ttl and quietness (at
max_series) act on the backtest's run time, not the data's.

Bad input (a line that is not OTLP JSON, a truncated file, a Prometheus
error answer, a cell or sample that is not a number, points out of order) is
reported with the file and line or series; the rest of the input is
backtested, the report and summary are written, and the exit status is 1.
Verdict attributes already on the input (a capture taken after an iforest
processor) are removed first; the report notes it.

flags:
`

// runBacktestCmd implements "iforest-eval backtest".
func runBacktestCmd(args []string) error {
	fs := flag.NewFlagSet("backtest", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	cfgPath := fs.String("config", "", "processor settings or collector configuration `FILE` (default: the processor's defaults)")
	cmpPath := fs.String("compare", "", "a second config `FILE`: the same data under it, side by side")
	out := fs.String("out", "", "write the HTML report to `FILE`")
	asJSON := fs.Bool("json", false, "print the summary as JSON on stdout")
	verdicts := fs.String("verdicts", "", "write every datapoint's verdict (under --config) as CSV to `FILE`")
	format := fs.String("format", formatAuto, "input format: auto, otlp, prometheus or csv")
	maxPlots := fs.Int("max-plots", 20000, "most series drawn with their values (the first seen); the others are counted, their flags and incidents kept")
	workers := fs.Int("workers", 0, "goroutines feeding the processor (0: GOMAXPROCS; 1 with models: or high_cardinality)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), backtestUsage)
		fs.PrintDefaults()
	}
	// Flags may follow the inputs too.
	var inputs []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		inputs = append(inputs, fs.Arg(0))
		args = fs.Args()[1:]
	}
	switch {
	case len(inputs) == 0:
		fs.Usage()
		return usagef("backtest: no INPUT files")
	case *out == "" && !*asJSON && *verdicts == "":
		return usagef("backtest: nothing to write: pass --out FILE.html, --json or --verdicts FILE.csv")
	case !slices.Contains([]string{formatAuto, formatOTLP, formatPrometheus, formatCSV}, *format):
		return usagef("backtest: --format must be auto, otlp, prometheus or csv, got %q", *format)
	case *maxPlots < 0:
		return usagef("backtest: --max-plots must be >= 0")
	}
	bt := backtest{Inputs: inputs, Options: btOptions{Format: *format, MaxPlots: *maxPlots, Workers: *workers}}
	var err error
	if bt.Config, err = backtestConfig(*cfgPath); err != nil {
		return err
	}
	bt.ConfigName = configName(*cfgPath)
	if *cmpPath != "" {
		if bt.Compare, err = backtestConfig(*cmpPath); err != nil {
			return err
		}
		bt.CompareName = configName(*cmpPath)
	}
	// Output files are made first, so that a wrong path fails now and not
	// after the run.
	var reportFile *os.File
	if *out != "" {
		if reportFile, err = os.Create(*out); err != nil {
			return err
		}
		defer reportFile.Close()
	}
	var verdictFile *os.File
	if *verdicts != "" {
		if verdictFile, err = os.Create(*verdicts); err != nil {
			return err
		}
		defer verdictFile.Close()
		if bt.Options.Verdicts, err = newBTVerdictWriter(verdictFile); err != nil {
			return err
		}
	}
	bt.Options.Progress = newProgress(os.Stderr, "backtest", "bytes")
	res, err := bt.run(context.Background())
	if err != nil {
		return err
	}
	if verdictFile != nil {
		if err := verdictFile.Close(); err != nil {
			return fmt.Errorf("%s: %w", *verdicts, err)
		}
	}
	if reportFile != nil {
		if err := writeReport(reportFile, res); err != nil {
			return fmt.Errorf("%s: %w", *out, err)
		}
		if err := reportFile.Close(); err != nil {
			return fmt.Errorf("%s: %w", *out, err)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res.Summary); err != nil {
			return err
		}
	}
	for _, n := range res.Summary.Notes {
		fmt.Fprintln(os.Stderr, "iforest-eval: backtest: note:", n)
	}
	if n := res.Summary.InputProblems; n > 0 {
		for _, p := range res.Summary.Problems {
			fmt.Fprintln(os.Stderr, "iforest-eval: backtest:", p)
		}
		if n > len(res.Summary.Problems) {
			fmt.Fprintf(os.Stderr, "iforest-eval: backtest: ... and %d more\n", n-len(res.Summary.Problems))
		}
		return fmt.Errorf("backtest: %d input problems (above); the rest of the input was backtested", n)
	}
	return nil
}

func configName(path string) string {
	if path == "" {
		return "defaults"
	}
	return path
}

// backtestConfig loads a config for the backtest, which reads verdicts
// from attributes: output.mode both is run as attributes.
func backtestConfig(path string) (*iforestprocessor.Config, error) {
	cfg, err := loadProcessorConfig(path)
	if err != nil {
		return nil, err
	}
	if cfg.Output.Mode == iforestprocessor.OutputBoth {
		cfg.Output.Mode = iforestprocessor.OutputAttributes
	}
	return cfg, nil
}

// configNotes says what of a config's run the numbers do not show: series
// left unscored at max_series look clean otherwise.
func configNotes(name string, cfg *iforestprocessor.Config, r *btRun) []string {
	var notes []string
	for _, c := range r.telemetry {
		if c.Metric == "otelcol_processor_iforest_datapoints_skipped" && c.Attributes["reason"] == "over_limit" && c.Value > 0 {
			notes = append(notes, fmt.Sprintf("%s: %.0f datapoints were not scored: their series found no model at max_series (%d); raise max_series to score them all", name, c.Value, cfg.MaxSeries))
		}
	}
	if cfg.Storage != nil {
		notes = append(notes, fmt.Sprintf("%s: storage (%s) is not used: the backtest starts from empty models", name, cfg.Storage))
	}
	return notes
}

// backtest is one invocation: inputs, one or two configs.
type backtest struct {
	Inputs                  []string
	Config, Compare         *iforestprocessor.Config
	ConfigName, CompareName string
	Options                 btOptions
}

// btResult is everything the report shows.
type btResult struct {
	Summary *btResultSummary
	Table   *btSeriesTable
	A, B    *btRun // B: nil without --compare
}

// btSummary is one config's numbers, the same in --json and the report.
type btSummary struct {
	Config                string           `json:"config"`
	Series                int              `json:"series"`
	Points                int64            `json:"points"`
	Scored                int64            `json:"scored"`
	Flagged               int64            `json:"flagged"`
	Incidents             int64            `json:"incidents"`
	SeriesWithIncidents   int              `json:"series_with_incidents"`
	SeriesDays            float64          `json:"series_days"`
	IncidentsPerSeriesDay float64          `json:"incidents_per_series_day"`
	Top                   []btTop          `json:"top_series"`
	Telemetry             []telemetryCount `json:"telemetry"`
}

// btTop is a series that alerts most.
type btTop struct {
	Index     int    `json:"-"`
	Series    string `json:"series"`
	Resource  string `json:"resource,omitempty"`
	Incidents int64  `json:"incidents"`
	Flagged   int64  `json:"flagged"`
}

// btResultSummary is what --json prints.
type btResultSummary struct {
	btSummary
	Inputs        []string          `json:"inputs"`
	From          string            `json:"from,omitempty"`
	To            string            `json:"to,omitempty"`
	InputProblems int               `json:"input_problems"`
	Problems      []string          `json:"problems,omitempty"`
	Notes         []string          `json:"notes,omitempty"`
	Compare       *btCompareSummary `json:"compare,omitempty"`
}

// btCompareSummary is the second config's numbers and what changed.
type btCompareSummary struct {
	btSummary
	ChangedSeries int        `json:"changed_series"`
	Changed       []btChange `json:"changed,omitempty"`
}

// btChange is a series whose incidents or flagged points differ between
// the two configs.
type btChange struct {
	Index      int    `json:"-"`
	Series     string `json:"series"`
	Resource   string `json:"resource,omitempty"`
	IncidentsA int64  `json:"incidents_a"`
	IncidentsB int64  `json:"incidents_b"`
	FlaggedA   int64  `json:"flagged_a"`
	FlaggedB   int64  `json:"flagged_b"`
}

// How many top and changed series the summary lists.
const (
	btTopSeries     = 10
	btChangedSeries = 10
)

func (bt *backtest) run(ctx context.Context) (*btResult, error) {
	table := newBTSeriesTable()
	a, err := runBacktest(ctx, bt.ConfigName, bt.Config, table, bt.Inputs, bt.Options, true)
	if err != nil {
		return nil, err
	}
	res := &btResult{Table: table, A: a}
	sum := &btResultSummary{btSummary: summarize(a, table), Inputs: bt.Inputs}
	if bt.Compare != nil {
		o := bt.Options
		o.Verdicts = nil
		b, err := runBacktest(ctx, bt.CompareName, bt.Compare, table, bt.Inputs, o, false)
		if err != nil {
			return nil, err
		}
		res.B = b
		sum.Compare = compareRuns(a, b, table)
		// The second pass may meet series the first did not (never: same
		// input), but count from one table either way.
		sum.Series = len(table.list)
	}
	from, to := timeRange(a)
	if from != 0 || to != 0 {
		sum.From, sum.To = fmtNanos(from), fmtNanos(to)
	}
	sum.InputProblems, sum.Problems, sum.Notes = a.problems.count, a.problems.list, a.notes
	sum.Notes = append(sum.Notes, configNotes(bt.ConfigName, bt.Config, a)...)
	if res.B != nil {
		sum.Notes = append(sum.Notes, configNotes(bt.CompareName, bt.Compare, res.B)...)
	}
	res.Summary = sum
	return res, nil
}

// timeRange is the first and last point's time over all series.
func timeRange(r *btRun) (from, to int64) {
	for _, st := range r.stats {
		if st == nil || st.points == 0 {
			continue
		}
		if from == 0 || st.from < from {
			from = st.from
		}
		to = max(to, st.to)
	}
	return from, to
}

// seriesDays is the time a series' points cover, in days: n points at a
// regular interval d cover n*d, i.e. the span from first to last times
// n/(n-1).
func seriesDays(st *btStats) float64 {
	if st.points < 2 {
		return 0
	}
	span := float64(st.to-st.from) / float64(24*3600*1e9)
	return span * float64(st.points) / float64(st.points-1)
}

// round4 rounds to 4 significant digits, so that the JSON and the report
// show the same number.
func round4(x float64) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'g', 4, 64), 64)
	return v
}

func summarize(r *btRun, table *btSeriesTable) btSummary {
	s := btSummary{Config: r.name, Series: len(table.list), Telemetry: r.telemetry}
	var days float64
	for _, st := range r.stats {
		if st == nil {
			continue
		}
		s.Points += st.points
		s.Scored += st.scored
		s.Flagged += st.flagged
		s.Incidents += st.incidents
		if st.incidents > 0 {
			s.SeriesWithIncidents++
		}
		days += seriesDays(st)
	}
	s.SeriesDays = math.Round(days*1000) / 1000
	if days > 0 {
		s.IncidentsPerSeriesDay = round4(float64(s.Incidents) / days)
	}
	ranked := slices.Clone(r.stats)
	ranked = slices.DeleteFunc(ranked, func(st *btStats) bool { return st == nil || st.incidents == 0 && st.flagged == 0 })
	slices.SortFunc(ranked, func(a, b *btStats) int {
		if a.incidents != b.incidents {
			return int(b.incidents - a.incidents)
		}
		if a.flagged != b.flagged {
			return int(b.flagged - a.flagged)
		}
		return a.s.idx - b.s.idx
	})
	for _, st := range ranked[:min(len(ranked), btTopSeries)] {
		s.Top = append(s.Top, btTop{Index: st.s.idx, Series: st.s.name(), Resource: st.s.resource, Incidents: st.incidents, Flagged: st.flagged})
	}
	return s
}

func compareRuns(a, b *btRun, table *btSeriesTable) *btCompareSummary {
	c := &btCompareSummary{btSummary: summarize(b, table)}
	get := func(r *btRun, i int) (inc, flagged int64) {
		if i < len(r.stats) && r.stats[i] != nil {
			return r.stats[i].incidents, r.stats[i].flagged
		}
		return 0, 0
	}
	var changed []btChange
	for i, s := range table.list {
		ia, fa := get(a, i)
		ib, fb := get(b, i)
		if ia != ib || fa != fb {
			changed = append(changed, btChange{Index: i, Series: s.name(), Resource: s.resource, IncidentsA: ia, IncidentsB: ib, FlaggedA: fa, FlaggedB: fb})
		}
	}
	abs := func(x int64) int64 { return max(x, -x) }
	slices.SortStableFunc(changed, func(x, y btChange) int {
		if d := abs(y.IncidentsB-y.IncidentsA) - abs(x.IncidentsB-x.IncidentsA); d != 0 {
			return int(d)
		}
		return int(abs(y.FlaggedB-y.FlaggedA) - abs(x.FlaggedB-x.FlaggedA))
	})
	c.ChangedSeries = len(changed)
	c.Changed = changed[:min(len(changed), btChangedSeries)]
	return c
}

// btVerdictWriter writes every datapoint's verdict as CSV. Workers fill
// their own buffers and write them whole, one at a time.
type btVerdictWriter struct {
	mu sync.Mutex
	w  io.Writer
}

var btVerdictHeader = []string{"metric", "attributes", "resource", "timestamp", "value", "score", "detected", "incident", "incident_id"}

func newBTVerdictWriter(w io.Writer) (*btVerdictWriter, error) {
	cw := csv.NewWriter(w)
	if err := cw.Write(btVerdictHeader); err != nil {
		return nil, err
	}
	cw.Flush()
	return &btVerdictWriter{w: w}, cw.Error()
}

func (v *btVerdictWriter) buffer() *btVerdictBuffer {
	b := &btVerdictBuffer{to: v}
	b.cw = csv.NewWriter(&b.buf)
	return b
}

// btVerdictBuffer is one worker's verdict lines not yet written.
type btVerdictBuffer struct {
	to  *btVerdictWriter
	buf strings.Builder
	cw  *csv.Writer
	rec []string
}

func (b *btVerdictBuffer) add(s *btSeries, t int64, v float64, attrs pcommon.Map, n *btVerdictAttrs) {
	rec := append(b.rec[:0], s.metric, s.attrs, s.resource, fmtNanos(t), strconv.FormatFloat(v, 'g', -1, 64), "", "", "", "")
	if sv, ok := attrDouble(attrs, n.score); ok {
		rec[5] = strconv.FormatFloat(sv, 'g', -1, 64)
	}
	if d, ok := attrs.Get(n.detected); ok {
		rec[6] = d.AsString()
	}
	if inc, ok := attrs.Get(n.incident); ok {
		rec[7] = inc.AsString()
	}
	if id, ok := attrs.Get(n.id); ok {
		rec[8] = id.AsString()
	}
	b.rec = rec
	_ = b.cw.Write(rec) // into a strings.Builder: cannot fail
}

func (b *btVerdictBuffer) flush() error {
	b.cw.Flush()
	if b.buf.Len() == 0 {
		return nil
	}
	b.to.mu.Lock()
	_, err := io.WriteString(b.to.w, b.buf.String())
	b.to.mu.Unlock()
	b.buf.Reset()
	return err
}
