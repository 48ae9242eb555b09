package nab_test

// Scenarios re-created from the official NAB test suite (github.com/numenta/NAB,
// tests/unit/scorer_test.py, tests/unit/optimizer_test.py,
// tests/unit/normalize_test.py and tests/integration/{scorer,false_positive,
// false_negative,true_positive}_test.py). The layouts and the expected values
// are NAB's; the code is ours. Each test names the official test it restates.
//
// NAB's tests mostly run with probationPercent=0 or an explicit probationary
// length, which NewFile would otherwise set to min(floor(0.15*n), 750); they
// set File.Probation before scoring. NAB's tests also check per-row
// tp/tn/fn counts; our Result counts windows, not rows, so only the FP count
// (flagged rows outside windows, the same in both) is compared.

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otel-iforest/iforest/internal/nab"
)

// allOnes is the cost matrix of NAB's integration tests: every weight 1.
var allOnes = nab.Profile{Name: "all ones", TPWeight: 1, FNWeight: 1, FPWeight: 1}

// unitCosts is the cost matrix of NAB's tests/unit/scorer_test.py.
var unitCosts = nab.Profile{Name: "unit", TPWeight: 1.1, FNWeight: 1.2, FPWeight: 0.11}

// optimizerCosts is the cost matrix of NAB's tests/unit/optimizer_test.py.
var optimizerCosts = nab.Profile{Name: "optimizer", TPWeight: 1, FNWeight: 1, FPWeight: 0.11}

// Values of NAB's scaledSigmoid quoted by its tests.
const (
	sigmaMinusHalf = 0.8482836399575131 // scaledSigmoid(-0.5)
	sigmaMinusOne  = 0.9866142981514305 // scaledSigmoid(-1.0), NAB's maxTP
	sigmaPlusHalf  = -0.8482836399575129
	sigmaPlusOne   = -0.9866142981514303
	sigmaPlusTwo   = -0.9999092042625951
)

// places7 is Python's assertAlmostEqual default: equal to 7 decimal places.
const places7 = 5e-8

// stamps mirrors NAB's generateTimestamps: n times, 5 minutes apart.
func stamps(n int) []time.Time {
	start := time.Date(2016, 7, 5, 10, 0, 0, 0, time.UTC)
	ts := make([]time.Time, n)
	for i := range ts {
		ts[i] = start.Add(time.Duration(i) * 5 * time.Minute)
	}
	return ts
}

// generatedWindows mirrors NAB's generateWindows: count windows of size
// intervals, evenly spaced, as [start, end] times.
func generatedWindows(ts []time.Time, count, size int) []nab.Window {
	step := ts[1].Sub(ts[0])
	gap := int(math.RoundToEven(float64(len(ts)-count*size) / float64(count+1)))
	var ws []nab.Window
	for i := range count {
		first := ts[0].Add(step * time.Duration(gap*(i+1)+size*i))
		ws = append(ws, nab.Window{Start: first, End: first.Add(step * time.Duration(size-1))})
	}
	return ws
}

// layout is a file of n rows with windows given in time, as NAB's tests
// build them; the windows are mapped onto rows with nab.Spans.
type layout struct {
	n     int
	spans []nab.Span
}

func newLayout(t *testing.T, n, windows, size int) layout {
	t.Helper()
	ts := stamps(n)
	var ws []nab.Window
	if windows > 0 {
		ws = generatedWindows(ts, windows, size)
	}
	spans, err := nab.Spans(ts, ws)
	require.NoError(t, err)
	return layout{n: n, spans: spans}
}

// file scores 1 at the detection rows and 0 elsewhere, with the given
// probationary length.
func (l layout) file(t *testing.T, probation int, detections ...int) *nab.File {
	t.Helper()
	scores := make([]float64, l.n)
	for _, i := range detections {
		scores[i] = 1
	}
	f, err := nab.NewFile("test/data.csv", scores, l.spans)
	require.NoError(t, err)
	f.Probation = probation
	return f
}

// TestOfficialWindowPlacement checks that generateWindows' windows land on
// the rows NAB's tests rely on.
func TestOfficialWindowPlacement(t *testing.T) {
	for _, c := range []struct {
		n, windows, size int
		want             []nab.Span
	}{
		{10, 1, 2, []nab.Span{{4, 5}}},
		{10, 1, 3, []nab.Span{{4, 6}}},
		{100, 1, 10, []nab.Span{{45, 54}}},
		{100, 2, 5, []nab.Span{{30, 34}, {65, 69}}},
		{1000, 1, 10, []nab.Span{{495, 504}}},
		{1000, 1, 100, []nab.Span{{450, 549}}},
		{2000, 4, 10, []nab.Span{{392, 401}, {794, 803}, {1196, 1205}, {1598, 1607}}},
	} {
		assert.Equal(t, c.want, newLayout(t, c.n, c.windows, c.size).spans, "%+v", c)
	}
}

// tests/unit/scorer_test.py: 5 or 7 rows, windows given as row limits,
// cost matrix tp 1.1, fn 1.2, fp 0.11, explicit probationary lengths.
func TestOfficialUnitScorer(t *testing.T) {
	w12 := nab.Window{Start: stamps(7)[1], End: stamps(7)[2]}
	w45 := nab.Window{Start: stamps(7)[4], End: stamps(7)[5]}
	first := unitCosts.TPWeight * sigmaMinusHalf / sigmaMinusOne
	second := unitCosts.TPWeight * sigmaMinusOne / sigmaMinusOne
	cases := []struct {
		name        string
		n           int
		predictions []int
		windows     []nab.Window
		probation   int
		want        float64
	}{
		{"testNull", 5, nil, nil, 0, 0},
		{"testFalsePositives", 5, []int{1, 3}, nil, 0, -2 * unitCosts.FPWeight},
		{"testFalseNegatives", 7, nil, []nab.Window{w12, w45}, 0, -2 * unitCosts.FNWeight},
		{"testFalsePositivesInProbationary", 5, []int{1, 3}, nil, 4, 0},
		{"testFalsePositivesBeforeAndAfterProbationary", 5, []int{1, 3}, nil, 3, -1 * unitCosts.FPWeight},
		{"testTruePositives1", 7, []int{2}, []nab.Window{w12}, 0, first},
		{"testTruePositives1WithFN", 7, []int{2}, []nab.Window{w12, w45}, 0, first - unitCosts.FNWeight},
		{"testTruePositives2", 7, []int{4}, []nab.Window{w45}, 0, second},
		{"testTruePositives3", 7, []int{4, 5}, []nab.Window{w45}, 0, second},
		{"testTruePositivesMultiple", 7, []int{2, 4}, []nab.Window{w12, w45}, 0, first + second},
		{"testFalsePositiveAfterWindow1", 5, []int{4}, []nab.Window{w12}, 0,
			-unitCosts.FNWeight + sigmaPlusTwo*unitCosts.FPWeight},
		{"testFalsePositiveAfterWindow2", 5, []int{3}, []nab.Window{w12}, 0,
			-unitCosts.FNWeight + sigmaPlusOne*unitCosts.FPWeight},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spans, err := nab.Spans(stamps(c.n), c.windows)
			require.NoError(t, err)
			f := layout{n: c.n, spans: spans}.file(t, c.probation, c.predictions...)
			assert.InDelta(t, c.want, f.Score(unitCosts, 0.5).Score, places7)
		})
	}
}

// tests/integration/scorer_test.py
func TestOfficialIntegrationScorer(t *testing.T) {
	t.Run("testNullCase", func(t *testing.T) {
		f := newLayout(t, 10, 0, 0).file(t, 0)
		res := f.Score(allOnes, 0.5)
		assert.Equal(t, 0.0, res.Score)
		assert.Equal(t, 0, res.FP)
	})

	t.Run("testFalsePositiveScaling", func(t *testing.T) {
		// 10 random detections in 100 rows around one 10-row window,
		// fpWeight 0.11: over 20 draws the mean score lies in
		// [-1.5, 0.5]. NAB draws once; we try several seeds.
		l := newLayout(t, 100, 1, 10)
		p := allOnes
		p.FPWeight = 0.11
		for seed := range uint64(50) {
			r := rand.New(rand.NewPCG(seed, 2015))
			var sum float64
			for range 20 {
				sum += l.file(t, 0, r.Perm(100)[:10]...).Score(p, 0.5).Score
			}
			avg := sum / 20
			assert.True(t, -1.5 <= avg && avg <= 0.5, "seed %d: mean score %f", seed, avg)
		}
	})

	t.Run("testRewardLowFalseNegatives", func(t *testing.T) {
		f := newLayout(t, 100, 1, 10).file(t, 0)
		lowFN := allOnes
		lowFN.FNWeight, lowFN.FPWeight = 2, 0.055
		r1, r2 := f.Score(allOnes, 0.5), f.Score(lowFN, 0.5)
		assert.Equal(t, r1.Score, 0.5*r2.Score)
		assert.Equal(t, 0, r1.FP)
		assert.Equal(t, 0, r2.FP)
	})

	t.Run("testRewardLowFalsePositives", func(t *testing.T) {
		f := newLayout(t, 100, 0, 10).file(t, 0, 0)
		lowFP := allOnes
		lowFP.FPWeight, lowFP.FNWeight = 2, 0.5
		r1, r2 := f.Score(allOnes, 0.5), f.Score(lowFP, 0.5)
		assert.Equal(t, r1.Score, 0.5*r2.Score)
		assert.Equal(t, 1, r1.FP)
		assert.Equal(t, 1, r2.FP)
	})

	t.Run("testScoringAllMetrics", func(t *testing.T) {
		// Windows 30..34 and 65..69; a TP at the first window's start, an
		// extra TP after it and an FP at start+7.
		l := newLayout(t, 100, 2, 5)
		at := l.spans[0].First
		res := l.file(t, 0, at, at+1, at+7).Score(allOnes, 0.5)
		assert.InDelta(t, -0.9540, res.Score, 5e-5) // 4 places
		assert.Equal(t, 1, res.FP)
	})
}

// tests/integration/false_positive_test.py
func TestOfficialFalsePositives(t *testing.T) {
	t.Run("testFalsePositiveMeansNegativeScore", func(t *testing.T) {
		res := newLayout(t, 1000, 1, 10).file(t, 0, 0).Score(allOnes, 0.5)
		assert.Less(t, res.Score, 0.0)
		assert.Equal(t, 1, res.FP)
	})

	t.Run("testTwoFalsePositivesIsWorseThanOne", func(t *testing.T) {
		l := newLayout(t, 1000, 1, 10)
		r1 := l.file(t, 0, 0).Score(allOnes, 0.5)
		r2 := l.file(t, 0, 0, 1).Score(allOnes, 0.5)
		assert.Less(t, r2.Score, r1.Score)
		assert.Equal(t, 1, r1.FP)
		assert.Equal(t, 2, r2.FP)
	})

	t.Run("testOneFalsePositiveNoWindow", func(t *testing.T) {
		res := newLayout(t, 1000, 0, 10).file(t, 0, 0).Score(allOnes, 0.5)
		assert.Equal(t, -allOnes.FPWeight, res.Score)
		assert.Equal(t, 1, res.FP)
	})

	t.Run("testEarlierFalsePositiveAfterWindowIsBetter", func(t *testing.T) {
		l := newLayout(t, 10, 1, 2)
		after := l.spans[0].Last + 1
		r1 := l.file(t, 0, after).Score(allOnes, 0.5)
		r2 := l.file(t, 0, after+1).Score(allOnes, 0.5)
		assert.Greater(t, r1.Score, r2.Score)
		assert.Equal(t, 1, r1.FP)
		assert.Equal(t, 1, r2.FP)
	})
}

// tests/integration/false_negative_test.py
func TestOfficialFalseNegatives(t *testing.T) {
	t.Run("testFalseNegativeCausesNegativeScore", func(t *testing.T) {
		res := newLayout(t, 1000, 1, 10).file(t, 0).Score(allOnes, 1.0)
		assert.Equal(t, -allOnes.FNWeight, res.Score)
		assert.Equal(t, 0, res.FP)
	})

	t.Run("testFourFalseNegatives", func(t *testing.T) {
		res := newLayout(t, 2000, 4, 10).file(t, 0).Score(allOnes, 1)
		assert.Equal(t, 4*-allOnes.FNWeight, res.Score)
		assert.Equal(t, 0, res.FP)
	})
}

// tests/integration/true_positive_test.py
func TestOfficialTruePositives(t *testing.T) {
	t.Run("testFirstTruePositiveWithinWindow", func(t *testing.T) {
		l := newLayout(t, 10, 1, 2)
		res := l.file(t, 0, l.spans[0].First).Score(allOnes, 0.5)
		assert.Equal(t, allOnes.TPWeight, res.Score)
		assert.Equal(t, 0, res.FP)
	})

	t.Run("testEarlierTruePositiveIsBetter", func(t *testing.T) {
		l := newLayout(t, 10, 1, 2)
		r1 := l.file(t, 0, l.spans[0].First).Score(allOnes, 0.5)
		r2 := l.file(t, 0, l.spans[0].Last).Score(allOnes, 0.5)
		assert.Greater(t, r1.Score, r2.Score)
		assert.Equal(t, 0, r1.FP)
		assert.Equal(t, 0, r2.FP)
	})

	t.Run("testOnlyScoreFirstTruePositiveWithinWindow", func(t *testing.T) {
		l := newLayout(t, 10, 1, 2)
		r1 := l.file(t, 0, l.spans[0].First).Score(allOnes, 0.5)
		r2 := l.file(t, 0, l.spans[0].First, l.spans[0].Last).Score(allOnes, 0.5)
		assert.Equal(t, r1.Score, r2.Score)
		assert.Equal(t, 0, r2.FP)
	})

	t.Run("testTruePositivesWithDifferentWindowSizes", func(t *testing.T) {
		l1, l2 := newLayout(t, 10, 1, 2), newLayout(t, 10, 1, 3)
		r1 := l1.file(t, 0, l1.spans[0].First).Score(allOnes, 0.5)
		r2 := l2.file(t, 0, l2.spans[0].First).Score(allOnes, 0.5)
		assert.Equal(t, r1.Score, r2.Score)
	})

	t.Run("testTruePositiveAtRightEdgeOfWindow", func(t *testing.T) {
		// A TP on the window's last row scores about +0.025, an FP on the
		// row after it about -0.025 (plus the missed window's -1).
		l := newLayout(t, 1000, 1, 100)
		last := l.spans[0].Last
		r1 := l.file(t, 0, last).Score(allOnes, 0.5)
		r2 := l.file(t, 0, last+1).Score(allOnes, 0.5)
		assert.InDelta(t, 0, r1.Score+r2.Score+1, 5e-4) // 3 places
		assert.Equal(t, 0, r1.FP)
		assert.Equal(t, 1, r2.FP)
	})
}

// tests/unit/optimizer_test.py, testComputeScoreChange*: the change in
// score one detection outside the windows makes, fpWeight 0.11.
func TestOfficialScoreChange(t *testing.T) {
	change := func(t *testing.T, n int, spans []nab.Span, row int) float64 {
		l := layout{n: n, spans: spans}
		return l.file(t, 0, row).Score(optimizerCosts, 0.5).Score -
			l.file(t, 0).Score(optimizerCosts, 0.5).Score
	}
	window := []nab.Span{{3, 5}}
	for _, c := range []struct {
		name  string
		n     int
		spans []nab.Span
		row   int
		want  float64
	}{
		{"testComputeScoreChangeFalsePositiveNoWindow", 10, nil, 1, -optimizerCosts.FPWeight},
		{"testComputeScoreChangeFalsePositiveWithFarWindow", 200, window, 150, -optimizerCosts.FPWeight},
		{"testComputeScoreChangeFalsePositiveWithCloseWindow", 10, window, 6, sigmaPlusHalf * optimizerCosts.FPWeight},
	} {
		assert.InDelta(t, c.want, change(t, c.n, c.spans, c.row), places7, c.name)
	}
}

// The data sets of tests/unit/optimizer_test.py: row 0 is probationary.
func optimizerData1(t *testing.T) *nab.File {
	// Windows on rows 3..6 and 9..11.
	scores := []float64{0.0, 0.2, 0.1, 0.1, 0.3, 0.4, 0.1, 0.1, 0.1, 0.9, 0.7, 0.1, 0.3, 0.2, 0.01, 0.11}
	f, err := nab.NewFile("test/data1.csv", scores, []nab.Span{{3, 6}, {9, 11}})
	require.NoError(t, err)
	f.Probation = 1
	return f
}

func optimizerData2(t *testing.T) *nab.File {
	f, err := nab.NewFile("test/data2.csv", []float64{0.12, 0.31, 0.41, 0.21}, nil)
	require.NoError(t, err)
	f.Probation = 1
	return f
}

func optimizerData3(t *testing.T) *nab.File {
	f, err := nab.NewFile("test/data3.csv", []float64{0.0, 0.6, 0.9, 0.4}, []nab.Span{{1, 2}})
	require.NoError(t, err)
	f.Probation = 1
	return f
}

// tests/unit/optimizer_test.py, testComputeThresholdScores*: the best
// corpus-wide threshold.
func TestOfficialOptimizer(t *testing.T) {
	check := func(t *testing.T, c *nab.Corpus, want float64) {
		t.Helper()
		thr, raw := c.Optimize(optimizerCosts)
		assert.InDelta(t, want, thr, places7)
		total, _ := c.Score(optimizerCosts, thr)
		assert.InDelta(t, raw, total.Score, 1e-12, "sweep score vs direct score")
	}
	t.Run("testComputeThresholdScoresComplex", func(t *testing.T) {
		check(t, nab.NewCorpus([]*nab.File{optimizerData1(t)}), 0.3)
	})
	t.Run("testComputeThresholdScoresNoWindows", func(t *testing.T) {
		thr, _ := nab.NewCorpus([]*nab.File{optimizerData2(t)}).Optimize(optimizerCosts)
		assert.Greater(t, thr, 1.0)
	})
	t.Run("testComputeThresholdScoresCombined", func(t *testing.T) {
		check(t, nab.NewCorpus([]*nab.File{optimizerData1(t), optimizerData2(t)}), 0.4)
	})
	t.Run("testComputeThresholdScoresPerfectDetection", func(t *testing.T) {
		f := optimizerData3(t)
		c := nab.NewCorpus([]*nab.File{f})
		check(t, c, 0.6)
		// NAB also rescores every candidate threshold with the plain
		// scorer; here: none beats the optimum.
		_, raw := c.Optimize(optimizerCosts)
		for _, thr := range []float64{1.1, 0.9, 0.6, 0.4} {
			assert.LessOrEqual(t, f.Score(optimizerCosts, thr).Score, raw+1e-12, "threshold %v", thr)
		}
	})
}

// tests/unit/normalize_test.py, testScoreNormalization (NAB at ea702d75):
// the null detector scores -5.0 and the detector 2.0 on the standard
// profile; the test labels hold 5 windows, so the perfect score is
// 5*tpWeight = 5 and the normalised score 100*(2+5)/(5+5) = 70.
func TestOfficialNormalisation(t *testing.T) {
	const windows = 5
	null := -nab.Standard.FNWeight * windows
	require.Equal(t, -5.0, null, "NAB's null score file")
	got, ok := nab.Normalise(nab.Standard, 2.0, windows)
	require.True(t, ok)
	assert.InDelta(t, 70.0, got, 1e-12)
}
