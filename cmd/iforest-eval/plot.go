package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/otel-iforest/iforest/internal/nab"
)

// runPlot implements "iforest-eval plot": one NAB results file as a PNG.
func runPlot(args []string) error {
	fs := flag.NewFlagSet("plot", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	csvPath := fs.String("csv", "", "NAB results `FILE`, .../<category>/<NAME>_<file>.csv (required)")
	windows := fs.String("windows", "", "NAB combined_windows.json `FILE` (default: windows from the results' label column)")
	threshold := fs.Float64("threshold", 0, "detection threshold `T` (default: the standard threshold in the summary.json the nab subcommand wrote next to the results, if any)")
	out := fs.String("out", "", "PNG `FILE` to write (required)")
	width := fs.Int("width", 1400, "image width in pixels")
	height := fs.Int("height", 600, "image height in pixels")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: iforest-eval plot -csv RESULTS.csv -out FILE.png [flags]\n\nflags:")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() != 0:
		return usagef("plot: unexpected arguments %q", fs.Args())
	case *csvPath == "" || *out == "":
		fs.Usage()
		return usagef("plot: -csv and -out are required")
	case *width < 200 || *height < 200:
		return usagef("plot: -width and -height must be at least 200")
	}
	thrSet := false
	fs.Visit(func(f *flag.Flag) { thrSet = thrSet || f.Name == "threshold" })

	s, err := nab.LoadSeries(*csvPath)
	if err != nil {
		return err
	}
	if s.Scores == nil {
		return fmt.Errorf("%s: no anomaly_score column", *csvPath)
	}
	name := corpusNameOf(*csvPath)
	var spans []nab.Span
	if *windows != "" {
		ws, err := nab.LoadWindows(*windows)
		if err != nil {
			return err
		}
		w, ok := ws[name]
		if !ok {
			return fmt.Errorf("plot: %s (from the file name) is not in %s", name, *windows)
		}
		if spans, err = nab.Spans(s.Times, w); err != nil {
			return fmt.Errorf("%s: %w", *csvPath, err)
		}
	} else {
		spans = labelSpans(s.Labels)
	}
	thr := math.NaN()
	if thrSet {
		thr = *threshold
	} else if t, ok := summaryThreshold(filepath.Join(filepath.Dir(filepath.Dir(*csvPath)), summaryFile)); ok {
		thr = t
	}
	img, err := drawPlot(plotInput{Name: name, Series: s, Spans: spans, Threshold: thr}, *width, *height)
	if err != nil {
		return err
	}
	fh, err := os.Create(*out)
	if err != nil {
		return err
	}
	if err := png.Encode(fh, img); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

// corpusNameOf turns .../<category>/<NAME>_<file>.csv into
// <category>/<file>.csv.
func corpusNameOf(path string) string {
	base := filepath.Base(path)
	if _, file, ok := strings.Cut(base, "_"); ok {
		base = file
	}
	return filepath.Base(filepath.Dir(path)) + "/" + base
}

// labelSpans turns runs of labelled rows into windows.
func labelSpans(labels []bool) []nab.Span {
	var spans []nab.Span
	for i := 0; i < len(labels); i++ {
		if !labels[i] {
			continue
		}
		j := i
		for j+1 < len(labels) && labels[j+1] {
			j++
		}
		spans = append(spans, nab.Span{First: i, Last: j})
		i = j
	}
	return spans
}

// summaryThreshold reads the standard threshold from a summary.json.
func summaryThreshold(path string) (float64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	var s struct {
		Thresholds map[string]float64 `json:"thresholds"`
	}
	if json.Unmarshal(b, &s) != nil {
		return 0, false
	}
	t, ok := s.Thresholds[nab.Standard.Name]
	return t, ok
}

type plotInput struct {
	Name      string
	Series    *nab.Series // with Scores
	Spans     []nab.Span
	Threshold float64 // NaN: none
}

var (
	colBackground = color.RGBA{255, 255, 255, 255}
	colFrame      = color.RGBA{150, 150, 150, 255}
	colText       = color.RGBA{40, 40, 40, 255}
	colProbation  = color.RGBA{232, 232, 232, 255}
	colWindow     = color.RGBA{255, 222, 173, 255}
	colSeries     = color.RGBA{31, 78, 153, 255}
	colScore      = color.RGBA{60, 60, 60, 255}
	colFlag       = color.RGBA{220, 20, 20, 255}
)

// drawPlot draws the series (top panel) and its anomaly score (bottom
// panel) against the row number. Probation is shaded grey, windows orange;
// rows past probation scoring at or above the threshold are red squares on
// the series, and the threshold is a dashed red line on the scores.
func drawPlot(in plotInput, w, h int) (image.Image, error) {
	s := in.Series
	n := s.Len()
	if n == 0 || len(s.Scores) != n {
		return nil, errors.New("plot: no rows")
	}
	const (
		scale  = 2 // text scale: 8 px per character, 10 px high
		left   = 90
		right  = 16
		top    = 34
		gap    = 24
		bottom = 14
	)
	plotW := w - left - right
	avail := h - top - gap - bottom
	topH := avail * 2 / 3
	series := image.Rect(left, top, left+plotW, top+topH)
	scores := image.Rect(left, series.Max.Y+gap, left+plotW, h-bottom)

	c := newCanvas(w, h, colBackground)
	xOf := func(i int) int {
		if n == 1 {
			return left
		}
		return left + int(math.Round(float64(i)*float64(plotW-1)/float64(n-1)))
	}
	// Bands in both panels: probation, then the windows.
	probation := nab.Probation(n)
	band := func(first, last int, col color.RGBA) {
		x0, x1 := xOf(first), xOf(last)+1
		c.fillRect(x0, series.Min.Y, x1, series.Max.Y, col)
		c.fillRect(x0, scores.Min.Y, x1, scores.Max.Y, col)
	}
	if probation > 0 {
		band(0, probation-1, colProbation)
	}
	for _, sp := range in.Spans {
		band(sp.First, sp.Last, colWindow)
	}

	// Series.
	lo, hi := minMax(s.Values)
	if hi == lo {
		lo, hi = lo-1, hi+1
	}
	pad := (hi - lo) * 0.05
	lo, hi = lo-pad, hi+pad
	yOf := func(v, lo, hi float64, r image.Rectangle) int {
		f := (v - lo) / (hi - lo)
		return r.Max.Y - 1 - int(math.Round(f*float64(r.Dy()-1)))
	}
	for i := 1; i < n; i++ {
		c.line(xOf(i-1), yOf(s.Values[i-1], lo, hi, series), xOf(i), yOf(s.Values[i], lo, hi, series), colSeries)
	}

	// Scores, on [0, 1] unless some score is outside it.
	slo, shi := minMax(s.Scores)
	slo, shi = min(slo, 0), max(shi, 1)
	for i := 1; i < n; i++ {
		c.line(xOf(i-1), yOf(s.Scores[i-1], slo, shi, scores), xOf(i), yOf(s.Scores[i], slo, shi, scores), colScore)
	}

	// Threshold and detections.
	title := in.Name
	if !math.IsNaN(in.Threshold) {
		if in.Threshold <= shi {
			c.dashedHLine(scores.Min.X, scores.Max.X-1, yOf(in.Threshold, slo, shi, scores), 8, 5, colFlag)
		}
		for i := probation; i < n; i++ {
			if s.Scores[i] >= in.Threshold {
				x, y := xOf(i), yOf(s.Values[i], lo, hi, series)
				c.fillRect(x-2, y-2, x+3, y+3, colFlag)
			}
		}
		title += "   threshold " + fmtNum(in.Threshold)
		if f, err := nab.NewFile(in.Name, s.Scores, in.Spans); err == nil {
			r := f.Score(nab.Standard, in.Threshold)
			title += fmt.Sprintf("   standard %+.2f: %d of %d windows hit, %d false alarms", r.Score, r.TP, r.Windows, r.FP)
		}
	}

	c.strokeRect(series.Min.X, series.Min.Y, series.Max.X, series.Max.Y, colFrame)
	c.strokeRect(scores.Min.X, scores.Min.Y, scores.Max.X, scores.Max.Y, colFrame)
	c.text(8, 10, title, scale, colText)
	axis := func(v float64, y int) {
		label := fmtNum(v)
		c.text(left-8-textWidth(label, scale), y-5, label, scale, colText)
	}
	axis(hi-pad, yOf(hi-pad, lo, hi, series))
	axis(lo+pad, yOf(lo+pad, lo, hi, series))
	axis(shi, scores.Min.Y+5)
	axis(slo, scores.Max.Y-6)
	c.text(series.Min.X+6, series.Min.Y+6, "value", scale, colSeries)
	c.text(scores.Min.X+6, scores.Min.Y+6, "anomaly score", scale, colScore)
	return c.img, nil
}

func minMax(vs []float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, v := range vs {
		lo, hi = min(lo, v), max(hi, v)
	}
	return lo, hi
}

// fmtNum prints a number in at most 4 significant digits for labels.
func fmtNum(v float64) string {
	return strconv.FormatFloat(v, 'g', 4, 64)
}
