package nab

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The hand-worked cases share one layout: a file of N = 1000 rows, so
// probation is floor(0.15*1000) = 150 rows (0..149), and one window of
// W = 100 rows, 400..499 (R = 499).
//
// Useful values, using sigma(y) = 2/(1+exp(5y)) - 1 = tanh(-5y/2):
//
//	sigma(-1)   = tanh(2.5)   = 0.98661430
//	sigma(-0.5) = tanh(1.25)  = 0.84828364  -> credit 0.84828364/0.98661430 = 0.85979257
//	sigma(-0.01)= tanh(0.025) = 0.02499479  -> credit 0.02499479/0.98661430 = 0.02533391
//	sigma(1/99) = -tanh(2.5/99) = -tanh(0.02525253) = -0.02524716
//	sigma(3)    = -tanh(7.5)  = -0.99999939
const (
	handN = 1000
	delta = 1e-7
)

var handWindow = []Span{{First: 400, Last: 499}}

// handFile returns a file of handN rows scoring 1 at the detection rows and
// 0 elsewhere, so threshold 1 selects exactly those rows.
func handFile(t *testing.T, spans []Span, detections ...int) *File {
	t.Helper()
	scores := make([]float64, handN)
	for _, i := range detections {
		scores[i] = 1
	}
	f, err := NewFile("cat/hand.csv", scores, spans)
	require.NoError(t, err)
	require.Equal(t, 150, f.Probation)
	return f
}

func TestScoreHandWorked(t *testing.T) {
	cases := []struct {
		name       string
		spans      []Span
		detections []int
		profile    Profile
		want       float64
		tp, fn, fp int
	}{
		// Left edge, i = 400: -(R-i+1)/W = -(499-400+1)/100 = -1,
		// credit sigma(-1)/sigma(-1) = 1.
		{"left edge", handWindow, []int{400}, Standard, 1, 1, 0, 0},
		// Right edge, i = 499: -(499-499+1)/100 = -0.01, credit
		// sigma(-0.01)/sigma(-1) = 0.02533391: about 0, but a hit.
		{"right edge", handWindow, []int{499}, Standard, 0.02533391, 1, 0, 0},
		// Middle, i = 450: -(499-450+1)/100 = -0.5 -> 0.85979257.
		{"middle", handWindow, []int{450}, Standard, 0.85979257, 1, 0, 0},
		// No detection: -fnWeight = -1 (standard), -2 (low FN).
		{"miss standard", handWindow, nil, Standard, -1, 0, 1, 0},
		{"miss low FN", handWindow, nil, RewardLowFN, -2, 0, 1, 0},
		// Only the earliest detection counts: 450, 400 and 480 score
		// as 400 alone, +1; the later ones neither add nor cost.
		{"earliest counts", handWindow, []int{450, 400, 480}, Standard, 1, 1, 0, 0},
		// Row 200 is before the first window: -fpWeight, plus the missed
		// window -1. Standard: -0.11 - 1 = -1.11; low FP: -0.22 - 1 = -1.22.
		{"FP before window", handWindow, []int{200}, Standard, -1.11, 0, 1, 1},
		{"FP before window low FP", handWindow, []int{200}, RewardLowFP, -1.22, 0, 1, 1},
		// Row 500 is just after the window: |500-499|/(100-1) = 1/99,
		// 0.11*sigma(1/99) = 0.11*-0.02524716 = -0.00277719; with the
		// left-edge hit: 1 - 0.00277719 = 0.99722281.
		{"FP just after window", handWindow, []int{400, 500}, Standard, 0.99722281, 1, 0, 1},
		// Row 796: 297/99 = 3 exactly, not over 3, so
		// 0.11*sigma(3) = 0.11*-0.99999939 = -0.10999993; 1 - that = 0.89000007.
		{"FP three widths after", handWindow, []int{400, 796}, Standard, 0.89000007, 1, 0, 1},
		// Row 797: 298/99 > 3, the full cost: 1 - 0.11 = 0.89.
		{"FP past three widths", handWindow, []int{400, 797}, Standard, 0.89, 1, 0, 1},
		// Rows 149 and 100 are in probation and ignored, so the window is
		// missed: -1. Row 150 is the first scored row and costs: -1.11.
		{"probation ignored", handWindow, []int{100, 149}, Standard, -1, 0, 1, 0},
		{"first row after probation", handWindow, []int{149, 150}, Standard, -1.11, 0, 1, 1},
		// A file with no windows: only FP costs, each -fpWeight:
		// 2 * -0.11 = -0.22, and nothing to miss.
		{"no windows", nil, []int{200, 300}, Standard, -0.22, 0, 0, 2},
		{"no windows quiet", nil, nil, Standard, 0, 0, 0, 0},
		// Two windows, 300..399 and 600..699: row 250 is before the
		// first (-0.11); row 400 is just after the first, 1/99 ->
		// -0.00277719; row 600 is the second's left edge (+1); the
		// first window is missed (-1). Total -0.11277719.
		{"two windows", []Span{{300, 399}, {600, 699}}, []int{250, 400, 600}, Standard, -0.11277719, 1, 1, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := handFile(t, c.spans, c.detections...)
			res := f.Score(c.profile, 1)
			assert.InDelta(t, c.want, res.Score, delta)
			assert.Equal(t, Result{Score: res.Score, Windows: len(c.spans), TP: c.tp, FN: c.fn, FP: c.fp}, res)
		})
	}
}

func TestProbation(t *testing.T) {
	assert.Equal(t, 0, Probation(0))
	assert.Equal(t, 2, Probation(19)) // floor(2.85)
	assert.Equal(t, 150, Probation(1000))
	assert.Equal(t, 750, Probation(5000))
	assert.Equal(t, 750, Probation(22695))
}

func TestNormalise(t *testing.T) {
	// 10 windows, standard: S_null = -10, S_perfect = 10.
	for raw, want := range map[float64]float64{-10: 0, 10: 100, 0: 50, -12: -10} {
		got, ok := Normalise(Standard, raw, 10)
		require.True(t, ok)
		assert.InDelta(t, want, got, 1e-12, "raw %v", raw)
	}
	// Low FN: S_null = -20, S_perfect = 10; raw -5 -> 100*15/30 = 50.
	got, _ := Normalise(RewardLowFN, -5, 10)
	assert.InDelta(t, 50, got, 1e-12)
	_, ok := Normalise(Standard, -1, 0)
	assert.False(t, ok)
}

// corpusOf builds a small corpus whose detector scores each row with fn.
func corpusOf(t *testing.T, fn func(f, i int, spans []Span) float64) *Corpus {
	t.Helper()
	layouts := [][]Span{
		{{400, 499}},
		{{200, 259}, {700, 799}},
		nil,
		{{900, 999}},
	}
	var files []*File
	for fi, spans := range layouts {
		scores := make([]float64, handN)
		for i := range scores {
			scores[i] = fn(fi, i, spans)
		}
		f, err := NewFile("c/f.csv", scores, spans)
		require.NoError(t, err)
		files = append(files, f)
	}
	return NewCorpus(files)
}

func TestNeverFiringScoresZero(t *testing.T) {
	c := corpusOf(t, func(int, int, []Span) float64 { return 0 })
	require.Equal(t, 4, c.Windows())
	for _, p := range Profiles() {
		thr, raw := c.Optimize(p)
		// Flagging everything costs hundreds of FPs, so the best is to
		// flag nothing: S = S_null.
		assert.Equal(t, 1.1, thr, p.Name)
		assert.InDelta(t, -p.FNWeight*4, raw, 1e-12, p.Name)
		total, _ := c.Score(p, thr)
		n, ok := Normalise(p, total.Score, c.Windows())
		require.True(t, ok)
		assert.InDelta(t, 0, n, 1e-9, p.Name)
	}
}

func TestPerfectScoresHundred(t *testing.T) {
	c := corpusOf(t, func(_, i int, spans []Span) float64 {
		for _, s := range spans {
			if i == s.First {
				return 1
			}
		}
		return 0
	})
	for _, p := range Profiles() {
		thr, raw := c.Optimize(p)
		assert.Equal(t, 1.0, thr, p.Name)
		assert.InDelta(t, 4*p.TPWeight, raw, 1e-12, p.Name)
		total, _ := c.Score(p, thr)
		assert.Equal(t, Result{Score: total.Score, Windows: 4, TP: 4}, total)
		n, _ := Normalise(p, total.Score, c.Windows())
		assert.InDelta(t, 100, n, 1e-9, p.Name)
	}
}

// TestOptimizeMatchesBruteForce checks the one-pass sweep against scoring
// every candidate threshold from scratch, on random files with many tied
// scores.
func TestOptimizeMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	for trial := range 60 {
		var files []*File
		for range 1 + r.IntN(4) {
			n := 10 + r.IntN(300)
			var spans []Span
			for at := r.IntN(n / 2); at < n; {
				w := 1 + r.IntN(40)
				if at+w > n {
					break
				}
				spans = append(spans, Span{at, at + w - 1})
				at += w + 1 + r.IntN(100)
			}
			scores := make([]float64, n)
			for i := range scores {
				scores[i] = float64(r.IntN(12)) / 11
			}
			f, err := NewFile("c/f.csv", scores, spans)
			require.NoError(t, err)
			files = append(files, f)
		}
		c := NewCorpus(files)
		for _, p := range Profiles() {
			thr, raw := c.Optimize(p)

			var distinct []float64
			for _, f := range files {
				distinct = append(distinct, f.Scores[f.Probation:]...)
			}
			slices.Sort(distinct)
			slices.Reverse(distinct)
			candidates := append([]float64{c.NoDetection()}, slices.Compact(distinct)...)
			bestThr, bestRaw := math.NaN(), math.Inf(-1)
			for _, c := range candidates {
				var sum float64
				for _, f := range files {
					sum += f.Score(p, c).Score
				}
				if sum > bestRaw+1e-12 {
					bestThr, bestRaw = c, sum
				}
			}
			require.InDelta(t, bestRaw, raw, 1e-9, "trial %d %s", trial, p.Name)
			total, _ := c.Score(p, thr)
			require.InDelta(t, raw, total.Score, 1e-9, "trial %d %s: sweep score vs direct score at its threshold", trial, p.Name)
			require.Equal(t, bestThr, thr, "trial %d %s", trial, p.Name)
		}
	}
}

func TestNewFileRejects(t *testing.T) {
	_, err := NewFile("x", []float64{0, math.NaN()}, nil)
	assert.Error(t, err, "NaN")
	_, err = NewFile("x", make([]float64, 10), []Span{{5, 10}})
	assert.Error(t, err, "past the end")
	_, err = NewFile("x", make([]float64, 10), []Span{{5, 7}, {7, 8}})
	assert.Error(t, err, "overlap")
	_, err = NewFile("x", make([]float64, 10), []Span{{6, 7}, {1, 2}})
	assert.Error(t, err, "out of order")
}

func TestOneRowWindowCostsFullAfter(t *testing.T) {
	// W_prev = 1: |i-R|/(W-1) divides by zero, +Inf > 3, the full cost.
	f := handFile(t, []Span{{400, 400}}, 400, 401)
	res := f.Score(Standard, 1)
	assert.InDelta(t, 1-0.11, res.Score, 1e-12)
}
