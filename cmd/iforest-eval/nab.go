package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/otel-iforest/iforest/internal/metadata"
	"github.com/otel-iforest/iforest/internal/nab"
	iforestprocessor "github.com/otel-iforest/iforest/processor"
)

// Names the nab command gives its series, so a collector pipeline fed the
// same data would see the same thing.
const (
	nabFileAttr   = "nab.file"
	nabMetricName = "nab.value"
	summaryFile   = "summary.json"
)

// runNAB implements "iforest-eval nab": it streams every NAB data file
// through the real processor, writes NAB-format results and scores them.
func runNAB(args []string) error {
	fs := flag.NewFlagSet("nab", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	data := fs.String("data", "", "NAB data `DIR`, holding <category>/<file>.csv (required)")
	windows := fs.String("windows", "", "NAB combined_windows.json `FILE` (required)")
	out := fs.String("out", "", "results `DIR`; results go to DIR/NAME/<category>/NAME_<file>.csv (required)")
	cfgPath := fs.String("config", "", "YAML `FILE` with the processor's settings, e.g. \"trees: 50\" (default: the processor's defaults)")
	name := fs.String("name", "iforest", "detector name used in results paths (no underscores)")
	workers := fs.Int("workers", runtime.GOMAXPROCS(0), "files run at once, each through its own processor")
	asJSON := fs.Bool("json", false, "print the summary as JSON instead of tables")
	perFile := fs.Bool("files", false, "also list every file's standard-profile result")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: iforest-eval nab -data DIR -windows FILE -out DIR [flags]\n\nflags:")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() != 0:
		return usagef("nab: unexpected arguments %q", fs.Args())
	case *data == "" || *windows == "" || *out == "":
		fs.Usage()
		return usagef("nab: -data, -windows and -out are required")
	case *workers < 1:
		return usagef("nab: -workers must be >= 1")
	}
	if err := checkName(*name); err != nil {
		return usageError{err: err}
	}
	cfg, err := loadProcessorConfig(*cfgPath)
	if err != nil {
		return err
	}
	ws, err := nab.LoadWindows(*windows)
	if err != nil {
		return err
	}
	sum, err := evalNAB(context.Background(), nabOptions{
		Data: *data, Out: *out, Name: *name, Windows: ws, Config: cfg,
		Workers: *workers, Progress: newProgress(os.Stderr, "nab", "rows"),
	})
	if err != nil {
		return err
	}
	return printSummary(os.Stdout, sum, *asJSON, *perFile)
}

// checkName rejects detector names that would break NAB's results layout:
// the file name is NAME_<file>.csv and the first underscore splits it.
func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("nab: invalid -name %q", name)
	case strings.ContainsAny(name, `_/\`):
		return fmt.Errorf("nab: -name %q must not contain '_' or path separators", name)
	}
	return nil
}

// loadProcessorConfig returns the processor's default config with the
// settings of the YAML file at path (if any) applied, validated. The file
// holds either the processor's settings only (as under processors: iforest:)
// or a whole collector configuration, whose one iforest processor is taken.
func loadProcessorConfig(path string) (*iforestprocessor.Config, error) {
	cfg := iforestprocessor.NewFactory().CreateDefaultConfig().(*iforestprocessor.Config)
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		ret, err := confmap.NewRetrievedFromYAML(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		conf, err := ret.AsConf()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if conf.IsSet("processors") {
			if conf, err = iforestSettings(conf); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
		}
		if err := conf.Unmarshal(cfg); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	if err := confmap.Validate(cfg); err != nil {
		return nil, fmt.Errorf("processor config: %w", err)
	}
	if cfg.Output.Mode == iforestprocessor.OutputMetric {
		return nil, errors.New("processor config: output.mode must write attributes (attributes or both): the scores are read from them")
	}
	return cfg, nil
}

// iforestSettings finds the settings of the one iforest processor (iforest
// or iforest/NAME) under processors: of a collector configuration.
func iforestSettings(conf *confmap.Conf) (*confmap.Conf, error) {
	procs, err := conf.Sub("processors")
	if err != nil {
		return nil, fmt.Errorf("processors: %w", err)
	}
	var ids []string
	for id := range procs.ToStringMap() {
		if typ, _, _ := strings.Cut(id, "/"); typ == metadata.Type.String() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	switch len(ids) {
	case 0:
		return nil, errors.New("processors: no iforest processor in this collector configuration")
	case 1:
		return procs.Sub(ids[0])
	default:
		return nil, fmt.Errorf("processors: %d iforest processors (%s); put the settings of the one to use in a file of their own", len(ids), strings.Join(ids, ", "))
	}
}

type nabOptions struct {
	Data, Out, Name string
	Windows         nab.Windows
	Config          *iforestprocessor.Config
	Workers         int
	Progress        *progress // nil: silent
}

// nabFile is one data file on its way through the evaluation.
type nabFile struct {
	Name   string // corpus name, <category>/<file>.csv
	Path   string
	Series *nab.Series
	Spans  []nab.Span
	Metric string // the metric its rows are sent as; nabMetricName if empty
}

// evalNAB runs the processor over every file of the corpus, writes the
// results and scores them.
func evalNAB(ctx context.Context, o nabOptions) (*summary, error) {
	names, err := findDataFiles(o.Data)
	if err != nil {
		return nil, err
	}
	files := make([]*nabFile, len(names))
	var rows int
	for i, name := range names {
		ws, ok := o.Windows[name]
		if !ok {
			return nil, fmt.Errorf("%s: not in the windows file", name)
		}
		f := &nabFile{Name: name, Path: filepath.Join(o.Data, filepath.FromSlash(name))}
		if f.Series, err = nab.LoadSeries(f.Path); err != nil {
			return nil, err
		}
		if f.Spans, err = nab.Spans(f.Series.Times, ws); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		f.Series.Labels = nab.Labels(f.Series.Len(), f.Spans)
		files[i] = f
		rows += f.Series.Len()
	}

	o.Progress.start(len(files), rows)
	errs := make([]error, len(files))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(o.Workers, len(files)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f := files[i]
				t0 := time.Now()
				errs[i] = detectFile(ctx, o.Config, f, o.Progress.addRows)
				if errs[i] == nil {
					errs[i] = writeResultsFile(o.Out, o.Name, f)
				}
				o.Progress.fileDone(f.Name, f.Series.Len(), time.Since(t0))
			}
		}()
	}
	for i := range files {
		next <- i
	}
	close(next)
	wg.Wait()
	o.Progress.finish()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	scored := make([]*nab.File, len(files))
	for i, f := range files {
		if scored[i], err = nab.NewFile(f.Name, f.Series.Scores, f.Spans); err != nil {
			return nil, err
		}
	}
	series := make([]*nab.Series, len(files))
	for i, f := range files {
		series[i] = f.Series
	}
	sum := scoreCorpus(o.Name, scored, series)
	if err := writeSummaryFile(filepath.Join(o.Out, o.Name, summaryFile), sum); err != nil {
		return nil, err
	}
	return sum, nil
}

// findDataFiles lists DIR/<category>/<file>.csv as corpus names, sorted.
func findDataFiles(dir string) ([]string, error) {
	cats, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, c := range cats {
		if !c.IsDir() {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(dir, c.Name()))
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if !e.IsDir() && strings.HasSuffix(e.Name(), ".csv") {
				names = append(names, c.Name()+"/"+e.Name())
			}
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: no <category>/<file>.csv files", dir)
	}
	slices.Sort(names)
	return names, nil
}

// detectFile streams f's rows through a fresh processor, one datapoint per
// batch in row order, and stores each row's anomaly.score and
// anomaly.detected attributes in f.Series.Scores and Detected (0 and false
// before the first verdict). rowsDone is told how many rows have gone
// through, now and then.
func detectFile(ctx context.Context, cfg *iforestprocessor.Config, f *nabFile, rowsDone func(int)) error {
	scoreAttr := cfg.Output.AttributePrefix + "score"
	detectedAttr := cfg.Output.AttributePrefix + "detected"
	metric := cmp.Or(f.Metric, nabMetricName)
	var score float64
	var scored, detected bool
	sink, err := consumer.NewMetrics(func(_ context.Context, md pmetric.Metrics) error {
		score, detected, scored = datapointVerdict(md, metric, scoreAttr, detectedAttr)
		return nil
	})
	if err != nil {
		return err
	}
	p, err := startProcessor(ctx, cfg, sink)
	if err != nil {
		return err
	}
	defer p.stop(ctx) //nolint:errcheck // nothing to do about it here

	s := f.Series
	s.Scores = make([]float64, s.Len())
	s.Detected = make([]bool, s.Len())
	const report = 1000
	for i, t := range s.Times {
		md := pmetric.NewMetrics()
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr(nabFileAttr, f.Name)
		m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		m.SetName(metric)
		dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
		dp.SetTimestamp(pcommon.NewTimestampFromTime(t))
		dp.SetDoubleValue(s.Values[i])

		scored = false
		if err := p.ConsumeMetrics(ctx, md); err != nil {
			return fmt.Errorf("%s row %d: %w", f.Name, i, err)
		}
		if scored {
			s.Scores[i], s.Detected[i] = score, detected
		}
		if (i+1)%report == 0 {
			rowsDone(report)
		}
	}
	rowsDone(s.Len() % report)
	return nil
}

// datapointVerdict finds the score and detected attributes on the single
// datapoint of md.
func datapointVerdict(md pmetric.Metrics, metric, scoreAttr, detectedAttr string) (score float64, detected, ok bool) {
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		sms := rms.At(i).ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				m := ms.At(k)
				if m.Name() != metric || m.Type() != pmetric.MetricTypeGauge {
					continue
				}
				dps := m.Gauge().DataPoints()
				for l := 0; l < dps.Len(); l++ {
					attrs := dps.At(l).Attributes()
					if v, ok := attrs.Get(scoreAttr); ok && v.Type() == pcommon.ValueTypeDouble {
						d, _ := attrs.Get(detectedAttr)
						return v.Double(), d.Type() == pcommon.ValueTypeBool && d.Bool(), true
					}
				}
			}
		}
	}
	return 0, false, false
}

// resultsPath is where NAB keeps detector name's results for a corpus file:
// OUT/NAME/<category>/NAME_<file>.csv.
func resultsPath(out, name, corpusName string) string {
	cat, file, _ := strings.Cut(corpusName, "/")
	return filepath.Join(out, name, cat, name+"_"+file)
}

func writeResultsFile(out, name string, f *nabFile) error {
	path := resultsPath(out, name, f.Name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	fh, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := nab.WriteResults(fh, f.Series); err != nil {
		fh.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return fh.Close()
}

// progress reports on stderr: a redrawn bar when it is a terminal, else
// one line per finished file. name prefixes its lines ("nab"), unit names
// what the bar counts ("rows" unless set).
type progress struct {
	w          io.Writer
	tty        bool
	name, unit string

	mu                sync.Mutex
	files, totalFiles int
	rows, totalRows   int
	began             time.Time
	stop              chan struct{}
	stopped           chan struct{}
}

func newProgress(f *os.File, name, unit string) *progress {
	st, err := f.Stat()
	return &progress{w: f, tty: err == nil && st.Mode()&os.ModeCharDevice != 0, name: name, unit: unit}
}

func (p *progress) unitName() string {
	if p.unit == "" {
		return "rows"
	}
	return p.unit
}

func (p *progress) start(files, rows int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.files, p.rows = 0, 0 // a progress may be started again (backtest --compare)
	p.totalFiles, p.totalRows, p.began = files, rows, time.Now()
	p.mu.Unlock()
	if !p.tty {
		return
	}
	p.stop, p.stopped = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(p.stopped)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			p.draw()
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
		}
	}()
}

func (p *progress) addRows(n int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.rows += n
	p.mu.Unlock()
}

func (p *progress) fileDone(name string, rows int, took time.Duration) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.files++
	if !p.tty {
		fmt.Fprintf(p.w, "%s: [%d/%d] %s: %d %s in %.1fs\n", p.name, p.files, p.totalFiles, name, rows, p.unitName(), took.Seconds())
	}
}

func (p *progress) draw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	const width = 40
	frac := 1.0
	if p.totalRows > 0 {
		frac = min(float64(p.rows)/float64(p.totalRows), 1)
	}
	n := int(frac * width)
	fmt.Fprintf(p.w, "\r[%s%s] %3.0f%%  %d/%d files  %d/%d %s  %.0fs ",
		strings.Repeat("=", n), strings.Repeat(" ", width-n), 100*frac,
		p.files, p.totalFiles, p.rows, p.totalRows, p.unitName(), time.Since(p.began).Seconds())
}

func (p *progress) finish() {
	if p == nil {
		return
	}
	if p.tty {
		close(p.stop)
		<-p.stopped
		p.draw()
		fmt.Fprintln(p.w)
	}
	fmt.Fprintf(p.w, "%s: %d files, %d %s in %.1fs\n", p.name, p.totalFiles, p.totalRows, p.unitName(), time.Since(p.began).Seconds())
}
