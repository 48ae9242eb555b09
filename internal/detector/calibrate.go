package detector

import "math"

// Calibration: what a raw forest score means on this series.
//
// A raw score of 0.85 is routine on a bursty series and unheard of on a
// quiet one. Each one-input series therefore keeps the distribution of its
// own raw scores, as surprise u = -ln(1 - score), in a fading histogram,
// and turns a new raw score into p, the probability that a point of this
// series is at least as surprising. Deep in the tail, where the series has
// too few scores to count, p is extrapolated with an exponential tail
// fitted to its highest scores (peaks over threshold with shape 0).
//
// A stretch of moderately unusual points can matter although none stands
// out: a slow leak, a burst of activity. The stretch's evidence is a short
// moving average of the surprise, judged against the long-run mean and
// spread of the surprise (as HTM's anomaly likelihood judges its scores);
// it counts at a stretch's onset and whenever it grows by a clear margin,
// not at every point while it lasts.
//
// The verdict's score is 1/(1+e), e = p x the series' points per week: the
// number of points a week expected to be at least this unusual. A threshold
// t means (1-t)/t such points per series per week, on every series and at
// every interval: 0.8 is one every four weeks.

const (
	calBins = 64
	calMax  = 8.0 // u at or beyond this (raw score > 0.99966) goes to over
	calWide = calMax / calBins
	// calHalfLife is how many points it takes for a score's weight to
	// halve: the calibration remembers far beyond the window.
	calHalfLife = 8192
	// calPrior is the weight, in points, of the prior shape (see init),
	// and calPriorExcess the mean excess of its tail.
	calPrior       = 30
	calPriorMean   = 0.6
	calPriorSD     = 0.15
	calPriorExcess = 0.1
	// calTailPoints is the weight of scores the tail is fitted to when a
	// score lies beyond what the histogram counts well. At 10-second
	// intervals the threshold lies some five mean excesses beyond the
	// fit, where the mean excess's sampling error is multiplied: fitted to
	// 10 points, near-identical histories gave one score tail
	// probabilities up to 5x apart. 15 halved the quiet host's false
	// alarms over 100 forest seeds; 20 and more lent the seasonal series'
	// heavier tails too little weight (see docs/benchmarks.md).
	calTailPoints = 15
	calTailShare  = 0.03
	// calMinExcess floors the fitted tail's mean excess: a series whose
	// scores never varied is not infinitely sure.
	calMinExcess = 0.1
	// calCapExcesses: see add. 6 kept the seed scenario's spikes flagged
	// through their five points; 3 raised NAB's false alarms by half.
	calCapExcesses = 6
	// calCapMax bounds the same in surprise: counted at most that far
	// beyond the tail's start, extremes that recur cannot inflate the mean
	// excess without end (each counted further out than the last).
	calCapMax = 2.5
	// calStart: the scores of a model that has learned fewer points than
	// this (its window and trees still filling) say little about later
	// ones and are not counted.
	calStart = 256

	// stretchPoints is the span of the stretch's moving average, and
	// stretchGrowth the factor by which its tail probability must fall for
	// it to count again within one stretch. Over ten forest seeds, 10 and
	// 0.6 scored NAB 1.2 (standard) to 2.4 (low FP) higher than 12 and 0.7
	// and cut the seasonal series' false alarms; a faster average (8)
	// raised the false alarms at the threshold by 30%, a stricter growth
	// lost a held memory leak's incident (0.4) or the leak (0.2) in some
	// runs (see docs/benchmarks.md).
	stretchPoints = 10
	stretchGrowth = 0.6
	// stretchEnd: a tail probability above this ends a stretch.
	stretchEnd = 0.01
	// stretchMin: fewer scores than this give no stretch evidence.
	stretchMin = 50
)

// calGrow is the factor by which the next score's weight grows, so that
// older ones fade with calHalfLife (growing the new is cheaper than
// decaying the bins).
var calGrow = float32(math.Exp2(1.0 / calHalfLife))

type calibrator struct {
	bins  [calBins]float32
	over  float32 // weight at u >= calMax
	total float32
	inc   float32 // weight of the next score

	// Stretch evidence: a short moving average of u, the long-run mean and
	// variance of u, and the lowest tail probability of the stretch under
	// way (1: none).
	avg, mean, sq float64
	n             int32
	best          float64

	// body is a surprise that tail found in the body of the scores (at
	// least the tail's weight above it) under the current weights, or -1:
	// add needs no fit to count it (see add). Not saved: a cache.
	body float64
}

// surprise maps a score in [0, 1] to [0, +Inf).
func surprise(score float64) float64 {
	return -math.Log(max(1-score, 1e-12))
}

// init sets the prior: what the raw scores of a well-behaved series look
// like, u about normal(calPriorMean, calPriorSD) up to its 97th percentile,
// then an exponential tail of mean excess calPriorExcess. It gives a new
// series a sane scale until its own scores count: at the forest's ceiling
// (u about 1.8 to 2.2 at sample_size 32) a point scores well above 0.8.
func (c *calibrator) init() {
	*c = calibrator{inc: 1, best: 1, body: -1}
	q97 := calPriorMean + 1.881*calPriorSD
	for b := range calBins {
		u := (float64(b) + 0.5) * calWide
		var d float64
		if u < q97 {
			z := (u - calPriorMean) / calPriorSD
			d = 0.97 * math.Exp(-z*z/2) / (calPriorSD * math.Sqrt(2*math.Pi))
		} else {
			d = 0.03 / calPriorExcess * math.Exp(-(u-q97)/calPriorExcess)
		}
		c.bins[b] = float32(calPrior * d * calWide)
		c.total += c.bins[b]
	}
}

// tail returns P(U >= u) for a point of this series.
func (c *calibrator) tail(u float64) float64 {
	if math.IsNaN(u) {
		u = math.Inf(1) // as surprising as it gets; never an index
	}
	if a := c.above(u); a >= c.tailWeight() {
		if u < calMax {
			c.body = u
		}
		return a / float64(c.total)
	}
	q, m, w := c.fit()
	return w / float64(c.total) * math.Exp(-max(u-q, 0)/m)
}

// fit fits the exponential tail: q is the lowest bin edge with about
// calTailPoints of weight above it, w that weight, m its mean excess over q.
func (c *calibrator) fit() (q, m, w float64) {
	k := c.tailWeight()
	w = float64(c.over)
	b := calBins
	for b > 0 && w < k {
		b--
		w += float64(c.bins[b])
	}
	q = float64(b) * calWide
	ex := float64(c.over) * (calMax - q)
	for i := b; i < calBins; i++ {
		ex += float64(c.bins[i]) * ((float64(i)+0.5)*calWide - q)
	}
	return q, max(ex/max(w, 1e-30), calMinExcess), w
}

// tailWeight is the weight the tail is fitted to: calTailPoints, or the top
// calTailShare while there are few scores (the prior alone is 30 points,
// and its top half is no tail).
func (c *calibrator) tailWeight() float64 {
	return min(calTailPoints*float64(c.inc), calTailShare*float64(c.total))
}

// above is the weight at or above u, counting the part of u's bin above it.
func (c *calibrator) above(u float64) float64 {
	if !(u < calMax) { // NaN included
		return float64(c.over)
	}
	u = max(u, 0)
	b := int(u / calWide)
	w := float64(c.over) + (float64(b+1)-u/calWide)*float64(c.bins[b])
	for i := b + 1; i < calBins; i++ {
		w += float64(c.bins[i])
	}
	return w
}

// upper returns the surprise with share of the weight above it (0 if the
// weight is all above 0, calMax if more than share is at calMax or beyond).
// Counted from below: the body of a series' scores lies in the first few
// bins.
func (c *calibrator) upper(share float64) float64 {
	want := (1 - share) * float64(c.total)
	var w float64
	for b, bw := range c.bins {
		if w+float64(bw) >= want {
			if bw == 0 {
				return float64(b) * calWide
			}
			return (float64(b) + (want-w)/float64(bw)) * calWide
		}
		w += float64(bw)
	}
	return calMax
}

// add counts a score's surprise, one far beyond the fitted tail as if it
// were calCapExcesses mean excesses beyond the fit's start: a single
// extreme (the first point of an incident) must not stretch the tail so
// far that the next like it looks ordinary, while extremes that keep
// coming still widen the tail, step by step.
//
// Most points are counted right after tail found them in the body: u then
// lies less than a bin above the fit's start, below any cap (at least
// calCapExcesses x calMinExcess beyond the start), and add skips the fit,
// which costs more than the rest of a point's calibration.
func (c *calibrator) add(u float64) {
	if u != c.body {
		q, m, _ := c.fit()
		u = min(u, q+min(calCapExcesses*m, calCapMax))
	}
	c.body = -1
	if !(u < calMax) {
		c.over += c.inc
	} else {
		c.bins[int(max(u, 0)/calWide)] += c.inc
	}
	c.total += c.inc
	c.inc *= calGrow
	if c.inc > 1e30 { // rescale before float32 overflows
		for i := range c.bins {
			c.bins[i] /= c.inc
		}
		c.over /= c.inc
		c.total /= c.inc
		c.inc = 1
	}
}

// stretch returns the tail probability of the stretch ending with u, or 1
// if it does not count at this point (see the package comment above), and
// updates the stretch state.
func (c *calibrator) stretch(u float64) float64 {
	if c.n < stretchMin || c.sq <= 0 {
		return 1
	}
	avg := c.avg + (u-c.avg)*2/(stretchPoints+1)
	z := (avg - c.mean) / math.Sqrt(c.sq)
	p := 0.5 * math.Erfc(z/math.Sqrt2)
	counts := p < c.best*stretchGrowth
	switch {
	case p > stretchEnd:
		c.best = 1
	case p < c.best:
		c.best = p
	}
	if counts {
		return p
	}
	return 1
}

// learn folds u into the stretch's averages.
func (c *calibrator) learn(u float64) {
	if c.n == 0 {
		c.avg, c.mean = u, u
	}
	c.avg += (u - c.avg) * 2 / (stretchPoints + 1)
	w := max(1/float64(c.n+1), 1.0/calHalfLife)
	d := u - c.mean
	c.mean += w * d
	c.sq = (1 - w) * (c.sq + w*d*d)
	if c.n < math.MaxInt32 {
		c.n++
	}
}
