package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/otel-iforest/iforest/internal/nab"
	iforestprocessor "github.com/otel-iforest/iforest/processor"
)

// runScenario implements "iforest-eval scenario": it runs every CSV of a
// labelled scenario folder (../shared/data/seasonal, quiet-host) through the
// processor and counts, with the processor's own verdicts, the labelled
// anomalies caught and the false-alarm episodes.
func runScenario(args []string) error {
	fs := flag.NewFlagSet("scenario", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	dir := fs.String("dir", "", "scenario `DIR` holding windows.json and the CSV files it names (required)")
	cfgPath := fs.String("config", "", "YAML `FILE` with the processor's settings (default: the processor's defaults)")
	skip := fs.Duration("skip", 0, "false alarms count from this long after each file's first row (e.g. 168h for seasonal/, 2h for quiet-host/)")
	out := fs.String("out", "", "also write each file's results (NAB format with a detected column) to `DIR`")
	metric := fs.String("metric", nabMetricName, "the metric `NAME` every file's rows are sent as (a name ending in .utilization is a utilisation: its band stays in [0, 1] and moves under 1 percentage point are trivia)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: iforest-eval scenario -dir DIR [-skip D] [-config CFG.yaml] [-metric NAME] [-out DIR] [-json]

Each CSV (timestamp,value[,label,kind]) is one series, streamed row by row
through the processor. windows.json maps file names to labelled stretches
[[start, end, kind], ...]. A stretch is caught when a row inside it is
flagged (anomaly.detected). A false alarm is a flagged row outside every
stretch, from -skip on, except in the grace span after each stretch (as long
as the stretch); flags at most 6 rows apart are one episode.

flags:
`)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 || *dir == "" {
		fs.Usage()
		return usagef("scenario: -dir is required")
	}
	cfg, err := loadProcessorConfig(*cfgPath)
	if err != nil {
		return err
	}
	res, err := evalScenario(context.Background(), cfg, *dir, *metric, *skip, *out)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	res.print(os.Stdout)
	return nil
}

// scenarioResult is the verdicts on a scenario folder, counted.
type scenarioResult struct {
	Anomalies     int              `json:"anomalies"`
	Caught        int              `json:"caught"`
	FalseEpisodes int              `json:"false_alarm_episodes"`
	Files         []scenarioFileRe `json:"files"`
}

type scenarioFileRe struct {
	Name          string            `json:"name"`
	Rows          int               `json:"rows"`
	Flagged       int               `json:"flagged"`
	FalseEpisodes int               `json:"false_alarm_episodes"`
	Stretches     []scenarioStretch `json:"stretches"`
}

type scenarioStretch struct {
	Kind   string `json:"kind"`
	Start  string `json:"start"`
	Rows   int    `json:"rows"`
	Caught bool   `json:"caught"`
	// Delay is the rows from the stretch's first row to its first flag; -1
	// when missed.
	Delay int `json:"delay"`
}

// scenarioWindows is windows.json: file name -> [[start, end, kind], ...].
type scenarioWindows map[string][][3]string

func evalScenario(ctx context.Context, cfg *iforestprocessor.Config, dir, metric string, skip time.Duration, out string) (*scenarioResult, error) {
	b, err := os.ReadFile(filepath.Join(dir, "windows.json"))
	if err != nil {
		return nil, err
	}
	var ws scenarioWindows
	if err := json.Unmarshal(b, &ws); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "windows.json"), err)
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range ws {
			if !yield(n) {
				return
			}
		}
	})
	res := &scenarioResult{}
	for _, name := range names {
		fr, err := evalScenarioFile(ctx, cfg, dir, name, metric, ws[name], skip, out)
		if err != nil {
			return nil, err
		}
		res.Files = append(res.Files, *fr)
		res.FalseEpisodes += fr.FalseEpisodes
		for _, st := range fr.Stretches {
			res.Anomalies++
			if st.Caught {
				res.Caught++
			}
		}
	}
	return res, nil
}

func evalScenarioFile(ctx context.Context, cfg *iforestprocessor.Config, dir, name, metric string, raw [][3]string, skip time.Duration, out string) (*scenarioFileRe, error) {
	f := &nabFile{Name: name, Path: filepath.Join(dir, name), Metric: metric}
	var err error
	if f.Series, err = nab.LoadSeries(f.Path); err != nil {
		return nil, err
	}
	windows := make([]nab.Window, len(raw))
	for k, w := range raw {
		if windows[k].Start, err = nab.ParseTime(w[0]); err == nil {
			windows[k].End, err = nab.ParseTime(w[1])
		}
		if err != nil {
			return nil, fmt.Errorf("%s: window %d: %w", name, k, err)
		}
	}
	if f.Spans, err = nab.Spans(f.Series.Times, windows); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	f.Series.Labels = nab.Labels(f.Series.Len(), f.Spans)
	if err := detectFile(ctx, cfg, f, func(int) {}); err != nil {
		return nil, err
	}
	s := f.Series
	from := 0
	if len(s.Times) > 0 {
		begin := s.Times[0].Add(skip)
		from = len(s.Times)
		if i := slices.IndexFunc(s.Times, func(t time.Time) bool { return !t.Before(begin) }); i >= 0 {
			from = i
		}
	}
	al := nab.CountAlarms(s.Detected, f.Spans, from, 1)
	fr := &scenarioFileRe{Name: name, Rows: s.Len(), FalseEpisodes: al.FalseEpisodes}
	for _, d := range s.Detected {
		if d {
			fr.Flagged++
		}
	}
	for k, sp := range f.Spans {
		fr.Stretches = append(fr.Stretches, scenarioStretch{
			Kind: raw[k][2], Start: raw[k][0], Rows: sp.Width(), Caught: al.FirstHit[k] >= 0, Delay: al.FirstHit[k],
		})
	}
	if out != "" {
		path := filepath.Join(out, strings.TrimSuffix(name, ".csv")+"_results.csv")
		if err := os.MkdirAll(out, 0o755); err != nil {
			return nil, err
		}
		fh, err := os.Create(path)
		if err != nil {
			return nil, err
		}
		err = nab.WriteResults(fh, s)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, errors.Join(fmt.Errorf("%s", path), err)
		}
	}
	return fr, nil
}

func (r *scenarioResult) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "file\trows\tflagged\tfalse alarms\tanomalies (kind: delay in rows, or missed)\t")
	for _, f := range r.Files {
		var sts []string
		for _, st := range f.Stretches {
			if st.Caught {
				sts = append(sts, fmt.Sprintf("%s: %d", st.Kind, st.Delay))
			} else {
				sts = append(sts, st.Kind+": missed")
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t\n", f.Name, f.Rows, f.Flagged, f.FalseEpisodes, strings.Join(sts, ", "))
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d of %d anomalies caught, %d false-alarm episodes\n", r.Caught, r.Anomalies, r.FalseEpisodes)
}
