// Command iforest-replay sends the rows of a CSV file as OTLP gauge
// datapoints to a running collector, in file order and with each row's own
// timestamp, so recorded series (for example the NAB corpus) can be fed to the
// iforest processor.
//
//	iforest-replay --endpoint 127.0.0.1:4317 --file F.csv --metric NAME [--column COL]
//	iforest-replay --file F.csv --columns a=metric.a,b=metric.b
//
// The CSV has a header line and a `timestamp` column in "YYYY-MM-DD HH:MM:SS"
// (UTC). Empty or non-numeric cells produce no datapoint and are counted.
//
// With --load it generates synthetic gauge traffic instead, for throughput
// and soak runs (see load.go):
//
//	iforest-replay --load --rate N --series K --duration D [--batch B] [--workers W] [--shapes LIST] [--json]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := runIO(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "iforest-replay:", err)
	}
	stop()
	os.Exit(exitCode(err))
}

// exitCode is 0 for success and for -h/--help (the usage was asked for and
// printed), 2 for anything else.
func exitCode(err error) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

// options are the parsed command-line flags.
type options struct {
	endpoint        string
	file            string
	mappings        []mapping
	resource        []attribute
	scope           string
	timestampColumn string
	batch           int
	rate            float64
	wait            time.Duration
	timeout         time.Duration
	retries         int
	quiet           bool

	load     bool        // generate synthetic traffic instead of replaying a file
	loadOpts loadOptions // the --load settings
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("iforest-replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: iforest-replay --file F.csv --metric NAME [--column COL] [flags]
       iforest-replay --file F.csv --columns col=metric,... [flags]
       iforest-replay --load --rate N --series K --duration D [flags]

Sends each CSV row as gauge datapoints over OTLP gRPC, in file order, with
the row's timestamp. With --load, sends synthetic gauges of K series
(timestamps = now) and reports what the endpoint accepted. Flags:
`)
		fs.PrintDefaults()
	}
	var metric, column, columns, resource, shapes string
	fs.StringVar(&o.endpoint, "endpoint", "127.0.0.1:4317", "OTLP gRPC endpoint `host:port` (plaintext)")
	fs.StringVar(&o.file, "file", "", "CSV `file` to replay (required; - for stdin)")
	fs.StringVar(&metric, "metric", "", "metric `name` for the value column (required unless --columns)")
	fs.StringVar(&column, "column", "value", "CSV `column` holding the values, used with --metric")
	fs.StringVar(&columns, "columns", "", "several value columns as `col=metric,...` (col alone: metric named like the column)")
	fs.StringVar(&resource, "resource", "service.name=iforest-replay", "resource attributes `key=value,...`")
	fs.StringVar(&o.scope, "scope", scopeName, "instrumentation scope `name` of the replayed metrics (part of a series' identity)")
	fs.StringVar(&o.timestampColumn, "timestamp-column", "timestamp", "CSV `column` holding the row time (YYYY-MM-DD HH:MM:SS, UTC)")
	fs.IntVar(&o.batch, "batch", 0, "`rows` per request, 1 unless set (strict order across requests; larger is faster); with --load, datapoints per request, 500 unless set")
	fs.Float64Var(&o.rate, "rate", 0, "pace rows at this many `rows/s` (0 = as fast as possible); with --load datapoints/s in total")
	fs.DurationVar(&o.wait, "wait", 0, "wait up to this long for the endpoint to accept connections before sending")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "timeout of one export request")
	fs.IntVar(&o.retries, "retries", 5, "retries of a request refused as Unavailable/ResourceExhausted (exponential backoff)")
	fs.BoolVar(&o.quiet, "quiet", false, "print only the final report")
	fs.BoolVar(&o.load, "load", false, "generate synthetic gauge traffic instead of replaying a file")
	lo := &o.loadOpts
	fs.IntVar(&lo.series, "series", 1000, "--load: distinct `series`")
	fs.IntVar(&lo.metrics, "metrics", 1, "--load: spread the series over this many metric names")
	fs.IntVar(&lo.perResource, "series-per-resource", 100, "--load: series per resource (host.name)")
	fs.DurationVar(&lo.duration, "duration", time.Minute, "--load: how long to send (0 = until interrupted)")
	fs.IntVar(&lo.workers, "workers", 4, "--load: concurrent senders, each with its own share of the series")
	fs.Int64Var(&lo.points, "points", 0, "--load: stop after this many datapoints in total (0 = no limit)")
	fs.Uint64Var(&lo.seed, "seed", 1, "--load: seed of the generated values")
	fs.DurationVar(&lo.reportEvery, "report-interval", 10*time.Second, "--load: progress line interval on stderr (unless --quiet)")
	fs.BoolVar(&lo.json, "json", false, "--load: print the final report as JSON on stdout")
	fs.StringVar(&shapes, "shapes", "noisy", "--load: how the series move, `list` of noisy, constant, quantised, daily, spikes (series i takes the i-th modulo the list), or mix for all five")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.load {
		var err error
		if lo.shapes, err = parseShapes(shapes); err != nil {
			return o, err
		}
		return o, o.checkLoad(set, resource)
	}
	for _, name := range loadOnlyFlags {
		if set[name] {
			return o, fmt.Errorf("--%s needs --load", name)
		}
	}
	if !set["batch"] {
		o.batch = 1
	}
	if o.file == "" {
		return o, errors.New("--file is required")
	}
	switch {
	case columns != "" && (set["metric"] || set["column"]):
		return o, errors.New("--columns cannot be combined with --metric/--column")
	case columns != "":
		m, err := parseColumns(columns)
		if err != nil {
			return o, err
		}
		o.mappings = m
	case metric != "":
		if strings.TrimSpace(column) == "" {
			return o, errors.New("--column is empty")
		}
		o.mappings = []mapping{{Column: column, Metric: metric}}
	default:
		return o, errors.New("--metric (or --columns) is required")
	}
	var err error
	if o.resource, err = parseResource(resource); err != nil {
		return o, err
	}
	if o.batch < 1 {
		return o, fmt.Errorf("--batch must be >= 1, got %d", o.batch)
	}
	if o.rate < 0 {
		return o, fmt.Errorf("--rate must be >= 0, got %v", o.rate)
	}
	if o.retries < 0 {
		return o, fmt.Errorf("--retries must be >= 0, got %d", o.retries)
	}
	return o, nil
}

// parseColumns parses "a=metric.a,b=metric.b" (a bare "a" maps column a to
// metric a).
func parseColumns(s string) ([]mapping, error) {
	var out []mapping
	seen := map[string]bool{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		col, metric, found := strings.Cut(part, "=")
		col, metric = strings.TrimSpace(col), strings.TrimSpace(metric)
		if !found {
			metric = col
		}
		if col == "" || metric == "" {
			return nil, fmt.Errorf("--columns: bad entry %q, want col=metric", part)
		}
		if seen[metric] {
			return nil, fmt.Errorf("--columns: metric %q named twice", metric)
		}
		seen[metric] = true
		out = append(out, mapping{Column: col, Metric: metric})
	}
	if len(out) == 0 {
		return nil, errors.New("--columns: no columns given")
	}
	return out, nil
}

// parseResource parses "k=v,k2=v2". An empty string gives no attributes.
func parseResource(s string) ([]attribute, error) {
	var out []attribute
	for part := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		k, v, found := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if !found || k == "" {
			return nil, fmt.Errorf("--resource: bad entry %q, want key=value", part)
		}
		out = append(out, attribute{Key: k, Value: strings.TrimSpace(v)})
	}
	return out, nil
}

// report is what a replay did, printed on stderr at the end.
type report struct {
	Rows       int
	DataPoints int
	Skipped    int
	Requests   int
	Retries    int
	Rejected   int64
	Elapsed    time.Duration
}

func (r report) String() string {
	return fmt.Sprintf("read %d rows, sent %d datapoints in %d requests (%d empty/non-numeric cells skipped, %d retries, %d datapoints rejected) in %v",
		r.Rows, r.DataPoints, r.Requests, r.Skipped, r.Retries, r.Rejected, r.Elapsed.Round(time.Millisecond))
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	return runIO(ctx, args, io.Discard, stderr)
}

// runIO is run with a stdout for --load --json.
func runIO(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if o.load {
		return runLoad(ctx, o, stdout, stderr)
	}
	var in io.Reader = os.Stdin
	if o.file != "-" {
		f, err := os.Open(o.file)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	conn, err := dial(ctx, o)
	if err != nil {
		return err
	}
	defer conn.Close()

	s := &sender{
		client:     pmetricotlp.NewGRPCClient(conn),
		timeout:    o.timeout,
		retries:    o.retries,
		backoff:    200 * time.Millisecond,
		maxBackoff: 5 * time.Second,
	}
	if !o.quiet {
		s.log = stderr
	}
	rep, err := replay(ctx, in, o, s)
	fmt.Fprintf(stderr, "iforest-replay: %s: %v\n", o.endpoint, rep)
	return err
}

// replay reads the CSV, converts it batch by batch and sends each batch that
// has at least one datapoint.
func replay(ctx context.Context, in io.Reader, o options, s *sender) (report, error) {
	start := time.Now()
	var rep report
	finish := func(err error) (report, error) {
		rep.Requests, rep.Retries, rep.Rejected = s.requests, s.retried, s.rejected
		rep.Elapsed = time.Since(start)
		return rep, err
	}
	cr, err := newCSVReader(in, o.timestampColumn, o.mappings)
	if err != nil {
		return finish(err)
	}
	p := pacer{rate: o.rate}
	batch := make([]row, 0, o.batch)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := p.wait(ctx, rep.Rows-1); err != nil {
			return err
		}
		c := rowsToMetrics(batch, o.mappings, o.resource, o.scope)
		rep.Skipped += c.Skipped
		batch = batch[:0]
		if c.DataPoints == 0 {
			return nil
		}
		if err := s.send(ctx, c.Metrics); err != nil {
			return err
		}
		rep.DataPoints += c.DataPoints
		return nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return finish(err)
		}
		r, err := cr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return finish(err)
		}
		batch = append(batch, r)
		rep.Rows++
		if len(batch) == o.batch {
			if err := flush(); err != nil {
				return finish(err)
			}
		}
	}
	return finish(flush())
}
