package nab

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Profile weighs true positives, missed windows and false positives.
type Profile struct {
	Name                         string
	TPWeight, FNWeight, FPWeight float64
}

// NAB's three application profiles.
var (
	Standard    = Profile{Name: "standard", TPWeight: 1, FNWeight: 1, FPWeight: 0.11}
	RewardLowFP = Profile{Name: "reward_low_FP_rate", TPWeight: 1, FNWeight: 1, FPWeight: 0.22}
	RewardLowFN = Profile{Name: "reward_low_FN_rate", TPWeight: 1, FNWeight: 2, FPWeight: 0.11}
)

// Profiles lists the three profiles in NAB's order.
func Profiles() []Profile { return []Profile{Standard, RewardLowFP, RewardLowFN} }

// Probation is the number of leading rows of an n-row file that are not
// scored: min(floor(0.15*n), 750). The product is taken in floating point,
// as NAB does, so the rounding matches NAB's.
func Probation(n int) int {
	return int(min(math.Floor(0.15*float64(n)), 750))
}

// sigma is NAB's scaled sigmoid, 2/(1+exp(5y)) - 1, which runs from +1 far
// left of 0 to -1 far right of it, and is -1 outright for y > 3.
func sigma(y float64) float64 {
	if y > 3 {
		return -1
	}
	return 2/(1+math.Exp(5*y)) - 1
}

// Span is a window as an inclusive range of rows.
type Span struct {
	First, Last int
}

// Width is the number of rows in the span.
func (s Span) Width() int { return s.Last - s.First + 1 }

// Spans maps time windows onto rows: a window runs from the first row
// whose time is at or after its start to the last row whose time is at or
// before its end. (NAB's data has a few repeated timestamps and one step
// back in time, so times are scanned, not searched.) A window that covers
// no row is an error.
func Spans(times []time.Time, ws []Window) ([]Span, error) {
	spans := make([]Span, 0, len(ws))
	for k, w := range ws {
		first := slices.IndexFunc(times, func(t time.Time) bool { return !t.Before(w.Start) })
		last := len(times) - 1
		for last >= 0 && times[last].After(w.End) {
			last--
		}
		if first < 0 || first > last {
			return nil, fmt.Errorf("window %d [%s, %s] covers no rows", k, FormatTime(w.Start), FormatTime(w.End))
		}
		spans = append(spans, Span{First: first, Last: last})
	}
	return spans, nil
}

// File is one series' anomaly scores with its windows, ready to score.
type File struct {
	Name      string // corpus name, "<category>/<file>.csv"
	Scores    []float64
	Spans     []Span // sorted, disjoint
	Probation int

	// Per row, what a detection there is worth before profile weights:
	// inside a window (win[i] = its index) the TP credit in (0, 1];
	// outside (win[i] = -1) the FP cost in [-1, 0).
	win  []int32
	unit []float64
}

// NewFile prepares scores (one per row, none NaN) and the rows' windows for
// scoring. Spans must be sorted, disjoint and within the rows.
func NewFile(name string, scores []float64, spans []Span) (*File, error) {
	n := len(scores)
	for i, s := range scores {
		if math.IsNaN(s) {
			return nil, fmt.Errorf("%s: score of row %d is NaN", name, i)
		}
	}
	for k, s := range spans {
		if s.First < 0 || s.Last >= n || s.First > s.Last {
			return nil, fmt.Errorf("%s: window %d rows [%d, %d] outside the file's %d rows", name, k, s.First, s.Last, n)
		}
		if k > 0 && s.First <= spans[k-1].Last {
			return nil, fmt.Errorf("%s: windows %d and %d overlap or are out of order", name, k-1, k)
		}
	}
	f := &File{
		Name:      name,
		Scores:    scores,
		Spans:     spans,
		Probation: Probation(n),
		win:       make([]int32, n),
		unit:      make([]float64, n),
	}
	sigmaLeft := sigma(-1)
	k := 0 // the first window that does not end before row i
	for i := range n {
		for k < len(spans) && spans[k].Last < i {
			k++
		}
		switch {
		case k < len(spans) && i >= spans[k].First:
			// Inside window k: W rows ending at R; tpWeight at the
			// left edge, about 0 at the right edge.
			w, r := spans[k].Width(), spans[k].Last
			f.win[i] = int32(k)
			f.unit[i] = sigma(-float64(r-i+1)/float64(w)) / sigmaLeft
		case k == 0:
			// Before the first window: the full cost.
			f.win[i] = -1
			f.unit[i] = -1
		default:
			// After window k-1: a small cost just after it, the full
			// cost from three widths on. A one-row window divides by
			// zero, giving +Inf and so the full cost.
			prev := spans[k-1]
			f.win[i] = -1
			f.unit[i] = sigma(math.Abs(float64(i-prev.Last)) / float64(prev.Width()-1))
		}
	}
	return f, nil
}

// Category is the part of the corpus name before the first slash.
func (f *File) Category() string {
	c, _, _ := strings.Cut(f.Name, "/")
	return c
}

// Result is the score of some files under one profile and threshold.
type Result struct {
	Score   float64 // raw NAB score
	Windows int     // labelled windows
	TP      int     // windows with at least one detection
	FN      int     // windows without one
	FP      int     // scored rows flagged outside every window
}

// Add accumulates o into r.
func (r *Result) Add(o Result) {
	r.Score += o.Score
	r.Windows += o.Windows
	r.TP += o.TP
	r.FN += o.FN
	r.FP += o.FP
}

// Score applies p to f's detections at threshold: a row past probation is
// a detection when its score is >= threshold. Only the earliest detection
// in a window counts (it has the largest credit); every detection outside
// the windows costs.
func (f *File) Score(p Profile, threshold float64) Result {
	best := make([]float64, len(f.Spans)) // best credit per window
	hit := make([]bool, len(f.Spans))
	var fp float64
	res := Result{Windows: len(f.Spans)}
	for i := f.Probation; i < len(f.Scores); i++ {
		if f.Scores[i] < threshold {
			continue
		}
		if k := f.win[i]; k >= 0 {
			if !hit[k] || f.unit[i] > best[k] {
				best[k] = f.unit[i]
			}
			hit[k] = true
		} else {
			fp += f.unit[i]
			res.FP++
		}
	}
	var tp float64
	for k, b := range best {
		if hit[k] {
			tp += b
			res.TP++
		}
	}
	res.FN = res.Windows - res.TP
	res.Score = p.TPWeight*tp + p.FPWeight*fp - p.FNWeight*float64(res.FN)
	return res
}

// Normalise maps a raw score of files holding windows labelled windows onto
// NAB's scale: 0 for a detector that never fires, 100 for a perfect one.
// It reports false when there are no windows (the scale is undefined).
func Normalise(p Profile, raw float64, windows int) (float64, bool) {
	if windows == 0 {
		return 0, false
	}
	perfect := float64(windows) * p.TPWeight
	null := -p.FNWeight * float64(windows)
	return 100 * (raw - null) / (perfect - null), true
}

// Corpus is a set of files scored together under one threshold.
type Corpus struct {
	Files   []*File
	windows int
	rows    []sweepRow // every scored row of every file, by score descending
}

type sweepRow struct {
	score float64
	win   int32 // corpus-wide window index, or -1
	unit  float64
}

// NewCorpus collects files for threshold sweeps; it sorts every scored row
// once, so each sweep is linear.
func NewCorpus(files []*File) *Corpus {
	c := &Corpus{Files: files}
	n := 0
	for _, f := range files {
		n += max(0, len(f.Scores)-f.Probation)
	}
	c.rows = make([]sweepRow, 0, n)
	for _, f := range files {
		for i := f.Probation; i < len(f.Scores); i++ {
			w := f.win[i]
			if w >= 0 {
				w += int32(c.windows)
			}
			c.rows = append(c.rows, sweepRow{score: f.Scores[i], win: w, unit: f.unit[i]})
		}
		c.windows += len(f.Spans)
	}
	slices.SortFunc(c.rows, func(a, b sweepRow) int { return cmp.Compare(b.score, a.score) })
	return c
}

// Windows is the number of labelled windows in the corpus.
func (c *Corpus) Windows() int { return c.windows }

// NoDetection returns a threshold above every scored row: at it the corpus
// scores as a detector that never fires. It is 1.1 for scores in [0, 1].
func (c *Corpus) NoDetection() float64 {
	if len(c.rows) == 0 || c.rows[0].score < 1.1 {
		return 1.1
	}
	return math.Nextafter(c.rows[0].score, math.Inf(1))
}

// Optimize sweeps the threshold down through every distinct score, starting
// above the highest (no detections), and returns the threshold with the
// highest raw corpus score under p and that score. Of equal scores the
// highest threshold wins.
func (c *Corpus) Optimize(p Profile) (threshold, raw float64) {
	best := make([]float64, c.windows) // best credit per window
	hit := make([]bool, c.windows)
	var tp, fp float64
	found := 0
	score := func() float64 {
		return p.TPWeight*tp + p.FPWeight*fp - p.FNWeight*float64(c.windows-found)
	}
	threshold, raw = c.NoDetection(), score()
	for i := 0; i < len(c.rows); {
		// Every row with this score becomes a detection at once.
		j := i
		for ; j < len(c.rows) && c.rows[j].score == c.rows[i].score; j++ {
			r := c.rows[j]
			switch {
			case r.win < 0:
				fp += r.unit
			case !hit[r.win]:
				hit[r.win] = true
				best[r.win] = r.unit
				tp += r.unit
				found++
			case r.unit > best[r.win]:
				tp += r.unit - best[r.win]
				best[r.win] = r.unit
			}
		}
		if s := score(); s > raw {
			threshold, raw = c.rows[i].score, s
		}
		i = j
	}
	return threshold, raw
}

// Score scores every file of the corpus under p at threshold and returns
// the total and the per-file results, in c.Files order.
func (c *Corpus) Score(p Profile, threshold float64) (Result, []Result) {
	var total Result
	per := make([]Result, len(c.Files))
	for i, f := range c.Files {
		per[i] = f.Score(p, threshold)
		total.Add(per[i])
	}
	return total, per
}
