package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/otel-iforest/iforest/internal/nab"
)

// runScore implements "iforest-eval score": it scores existing NAB-format
// results (this tool's or any other detector's) against the windows.
func runScore(args []string) error {
	fs := flag.NewFlagSet("score", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	results := fs.String("results", "", "a detector's results `DIR`, e.g. eval-results/iforest, holding <category>/NAME_<file>.csv (required)")
	windows := fs.String("windows", "", "NAB combined_windows.json `FILE` (required)")
	asJSON := fs.Bool("json", false, "print the summary as JSON instead of tables")
	perFile := fs.Bool("files", false, "also list every file's standard-profile result")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: iforest-eval score -results DIR/NAME -windows FILE [flags]\n\nflags:")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() != 0:
		return usagef("score: unexpected arguments %q", fs.Args())
	case *results == "" || *windows == "":
		fs.Usage()
		return usagef("score: -results and -windows are required")
	}
	ws, err := nab.LoadWindows(*windows)
	if err != nil {
		return err
	}
	files, series, err := loadResultsDir(*results, ws)
	if err != nil {
		return err
	}
	if len(files) < len(ws) {
		fmt.Fprintf(os.Stderr, "score: %d of the %d files in %s have results; scoring those\n", len(files), len(ws), *windows)
	}
	return printSummary(os.Stdout, scoreCorpus(filepath.Base(filepath.Clean(*results)), files, series), *asJSON, *perFile)
}

// loadResultsDir reads DIR/<category>/<NAME>_<file>.csv, naming each file
// <category>/<file>.csv after NAB's convention that detector names have no
// underscore, and maps its windows onto its rows. It returns the rows too,
// in the same order.
func loadResultsDir(dir string, ws nab.Windows) ([]*nab.File, []*nab.Series, error) {
	cats, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	type loaded struct {
		f *nab.File
		s *nab.Series
	}
	var all []loaded
	for _, c := range cats {
		if !c.IsDir() {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(dir, c.Name()))
		if err != nil {
			return nil, nil, err
		}
		for _, e := range entries {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".csv") {
				continue
			}
			path := filepath.Join(dir, c.Name(), e.Name())
			_, file, ok := strings.Cut(e.Name(), "_")
			if !ok {
				return nil, nil, fmt.Errorf("%s: want a name of the form <detector>_<file>.csv", path)
			}
			name := c.Name() + "/" + file
			w, ok := ws[name]
			if !ok {
				return nil, nil, fmt.Errorf("%s: %s is not in the windows file", path, name)
			}
			f, s, err := loadResultsFile(path, name, w)
			if err != nil {
				return nil, nil, err
			}
			all = append(all, loaded{f, s})
		}
	}
	if len(all) == 0 {
		return nil, nil, fmt.Errorf("%s: no <category>/<detector>_<file>.csv results", dir)
	}
	slices.SortFunc(all, func(a, b loaded) int { return strings.Compare(a.f.Name, b.f.Name) })
	files, series := make([]*nab.File, len(all)), make([]*nab.Series, len(all))
	for i, l := range all {
		files[i], series[i] = l.f, l.s
	}
	return files, series, nil
}

func loadResultsFile(path, name string, ws []nab.Window) (*nab.File, *nab.Series, error) {
	s, err := nab.LoadSeries(path)
	if err != nil {
		return nil, nil, err
	}
	if s.Scores == nil {
		return nil, nil, fmt.Errorf("%s: no anomaly_score column", path)
	}
	spans, err := nab.Spans(s.Times, ws)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	f, err := nab.NewFile(name, s.Scores, spans)
	return f, s, err
}

// summary is a detector's NAB result: each profile at its own optimal
// threshold, and the standard profile per category and per file.
type summary struct {
	Detector   string
	Files      int
	Rows       int
	Windows    int
	Profiles   []profileResult
	Categories []groupResult // standard profile, at its corpus threshold
	PerFile    []groupResult // standard profile, at its corpus threshold
	// Alarms counts the detector's own verdicts (its detected column) when
	// it gave them: what it pages for at its configured threshold.
	Alarms *alarmSummary
}

// alarmSummary is the detector's own verdicts over the corpus.
type alarmSummary struct {
	Windows, WindowsHit int
	FalseEpisodes       int
	SeriesDays          float64 // scored days (after probation), summed over files
}

// EpisodesPerSeriesDay is the false-alarm rate.
func (a *alarmSummary) EpisodesPerSeriesDay() float64 {
	if a.SeriesDays <= 0 {
		return 0
	}
	return float64(a.FalseEpisodes) / a.SeriesDays
}

// add adds a file's verdicts to a: windows hit anywhere in them,
// false-alarm episodes after the probation.
func (a *alarmSummary) add(s *nab.Series, f *nab.File) {
	al := nab.CountAlarms(s.Detected, f.Spans, f.Probation, 0)
	a.Windows += al.Windows
	a.WindowsHit += al.WindowsHit
	a.FalseEpisodes += al.FalseEpisodes
	if n := s.Len(); n > f.Probation+1 {
		a.SeriesDays += s.Times[n-1].Sub(s.Times[f.Probation]).Hours() / 24
	}
}

type profileResult struct {
	Profile   nab.Profile
	Threshold float64
	Score     float64 // normalised
	nab.Result
}

// groupResult is the standard profile's result on some of the files.
type groupResult struct {
	Name  string
	Files int
	Score *float64 // normalised; nil without windows
	nab.Result
}

// scoreCorpus scores files. series are their rows (same order); when every
// one has the detector's own verdicts, those are counted too (Alarms).
func scoreCorpus(detector string, files []*nab.File, series []*nab.Series) *summary {
	c := nab.NewCorpus(files)
	sum := &summary{Detector: detector, Files: len(files), Windows: c.Windows()}
	for _, f := range files {
		sum.Rows += len(f.Scores)
	}
	if !slices.ContainsFunc(series, func(s *nab.Series) bool { return s.Detected == nil }) {
		sum.Alarms = &alarmSummary{}
		for i, f := range files {
			sum.Alarms.add(series[i], f)
		}
	}
	var perFile []nab.Result
	for _, p := range nab.Profiles() {
		thr, _ := c.Optimize(p)
		total, per := c.Score(p, thr)
		score, _ := nab.Normalise(p, total.Score, total.Windows)
		sum.Profiles = append(sum.Profiles, profileResult{Profile: p, Threshold: thr, Score: score, Result: total})
		if p == nab.Standard {
			perFile = per
		}
	}

	cats := map[string]*groupResult{}
	for i, f := range files {
		g := groupResult{Name: f.Name, Files: 1, Result: perFile[i]}
		g.Score = normalised(g.Result)
		sum.PerFile = append(sum.PerFile, g)

		cat := cats[f.Category()]
		if cat == nil {
			cat = &groupResult{Name: f.Category()}
			cats[f.Category()] = cat
		}
		cat.Files++
		cat.Add(perFile[i])
	}
	for _, name := range slices.Sorted(maps.Keys(cats)) {
		g := cats[name]
		g.Score = normalised(g.Result)
		sum.Categories = append(sum.Categories, *g)
	}
	return sum
}

func normalised(r nab.Result) *float64 {
	if s, ok := nab.Normalise(nab.Standard, r.Score, r.Windows); ok {
		return &s
	}
	return nil
}

// jsonSummary is the --json form of a summary.
type jsonSummary struct {
	Standard    float64                    `json:"standard"`
	RewardLowFP float64                    `json:"reward_low_FP_rate"`
	RewardLowFN float64                    `json:"reward_low_FN_rate"`
	Thresholds  map[string]float64         `json:"thresholds"`
	Raw         map[string]float64         `json:"raw"`
	Categories  map[string]jsonGroupResult `json:"categories"`
	PerFile     map[string]jsonGroupResult `json:"files"`
	Detector    string                     `json:"detector"`
	Files       int                        `json:"file_count"`
	Rows        int                        `json:"rows"`
	Windows     int                        `json:"windows"`
	Alarms      *jsonAlarms                `json:"alarms,omitempty"`
}

// jsonAlarms is the --json form of an alarmSummary.
type jsonAlarms struct {
	WindowsHit           int     `json:"windows_hit"`
	Windows              int     `json:"windows"`
	FalseEpisodes        int     `json:"false_alarm_episodes"`
	SeriesDays           float64 `json:"series_days"`
	EpisodesPerSeriesDay float64 `json:"false_alarm_episodes_per_series_day"`
}

type jsonGroupResult struct {
	Score   *float64 `json:"score"` // standard, normalised; null without windows
	Raw     float64  `json:"raw"`
	Files   int      `json:"files,omitempty"`
	Windows int      `json:"windows"`
	TP      int      `json:"tp"`
	FN      int      `json:"fn"`
	FP      int      `json:"fp"`
}

func (s *summary) json() jsonSummary {
	j := jsonSummary{
		Thresholds: map[string]float64{}, Raw: map[string]float64{},
		Categories: map[string]jsonGroupResult{}, PerFile: map[string]jsonGroupResult{},
		Detector: s.Detector, Files: s.Files, Rows: s.Rows, Windows: s.Windows,
	}
	for _, p := range s.Profiles {
		switch p.Profile {
		case nab.Standard:
			j.Standard = p.Score
		case nab.RewardLowFP:
			j.RewardLowFP = p.Score
		case nab.RewardLowFN:
			j.RewardLowFN = p.Score
		}
		j.Thresholds[p.Profile.Name] = p.Threshold
		j.Raw[p.Profile.Name] = p.Result.Score
	}
	group := func(g groupResult, files int) jsonGroupResult {
		return jsonGroupResult{Score: g.Score, Raw: g.Result.Score, Files: files, Windows: g.Windows, TP: g.TP, FN: g.FN, FP: g.FP}
	}
	for _, g := range s.Categories {
		j.Categories[g.Name] = group(g, g.Files)
	}
	for _, g := range s.PerFile {
		j.PerFile[g.Name] = group(g, 0)
	}
	if a := s.Alarms; a != nil {
		j.Alarms = &jsonAlarms{WindowsHit: a.WindowsHit, Windows: a.Windows, FalseEpisodes: a.FalseEpisodes,
			SeriesDays: a.SeriesDays, EpisodesPerSeriesDay: a.EpisodesPerSeriesDay()}
	}
	return j
}

func writeSummaryFile(path string, s *summary) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(s.json(), "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// printSummary writes s as JSON or as tables: the three profiles, then the
// standard profile per category (and per file with perFile).
func printSummary(w io.Writer, s *summary, asJSON, perFile bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(s.json())
	}
	fmt.Fprintf(w, "NAB scores of %s: %d files, %d rows, %d windows\n\n", s.Detector, s.Files, s.Rows, s.Windows)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "profile\tscore\traw\tthreshold\tTP\tFN\tFP\t")
	for _, p := range s.Profiles {
		fmt.Fprintf(tw, "%s\t%.1f\t%.2f\t%.6g\t%d\t%d\t%d\t\n", p.Profile.Name, p.Score, p.Result.Score, p.Threshold, p.TP, p.FN, p.FP)
	}
	tw.Flush()
	if a := s.Alarms; a != nil {
		fmt.Fprintf(w, "\nAt the configured threshold (anomaly.detected): %d of %d windows hit, %d false-alarm episodes in %.0f series-days (%.3f per series-day)\n",
			a.WindowsHit, a.Windows, a.FalseEpisodes, a.SeriesDays, a.EpisodesPerSeriesDay())
	}

	std := s.Profiles[0]
	groups := func(title string, gs []groupResult) {
		fmt.Fprintf(w, "\n%s, standard profile at threshold %.6g (score is normalised with the group's own windows):\n", title, std.Threshold)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "\tscore\traw\twindows\tTP\tFN\tFP\t")
		for _, g := range gs {
			score := "-"
			if g.Score != nil {
				score = fmt.Sprintf("%.1f", *g.Score)
			}
			fmt.Fprintf(tw, "%s\t%s\t%.2f\t%d\t%d\t%d\t%d\t\n", g.Name, score, g.Result.Score, g.Windows, g.TP, g.FN, g.FP)
		}
		tw.Flush()
	}
	groups("By category", s.Categories)
	if perFile {
		groups("By file", s.PerFile)
	}
	return nil
}
