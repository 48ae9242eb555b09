package detector

import "math"

// expectedRange finds the band of model inputs around the window's centre
// that score (the forest's score of a value, derived inputs included) puts below thr: what the model would have called normal
// at this moment. Each side is found by bisection between the centre and a
// point far enough out to score at or above thr (scores grow with distance
// beyond the data, see forest.ScoreAsInserted). ok is false when the centre
// itself is not normal or no side reaches thr. Only called for flagged
// points of one-input models, so its few dozen scorings stay off the common
// path.
func expectedRange(win []float32, thr float64, score func(v float64) float64) (lo, hi float64, ok bool) {
	if len(win) == 0 {
		return 0, 0, false
	}
	mn, mx, sum := math.Inf(1), math.Inf(-1), 0.0
	for _, v := range win {
		x := float64(v)
		mn, mx, sum = math.Min(mn, x), math.Max(mx, x), sum+x
	}
	centre := sum / float64(len(win))
	span := mx - mn
	if math.IsNaN(centre) || math.IsInf(centre, 0) || math.IsInf(span, 0) || score(centre) >= thr {
		return 0, 0, false
	}
	if span == 0 {
		span = math.Max(math.Abs(centre)*1e-3, 1e-9)
	}
	edge := func(dir float64) (float64, bool) {
		near, far := centre, 0.0
		for step := span; ; step *= 2 {
			far = centre + dir*step
			if score(far) >= thr {
				break
			}
			if step > span*(1<<30) {
				return 0, false
			}
			near = far
		}
		for range 30 {
			mid := (near + far) / 2
			if score(mid) >= thr {
				far = mid
			} else {
				near = mid
			}
		}
		return near, true
	}
	lo, okLo := edge(-1)
	hi, okHi := edge(1)
	if mn >= 0 {
		// A series that has never been negative (utilisation, counts,
		// rates) has no normal values below 0.
		lo = max(lo, 0)
	}
	return lo, hi, okLo && okHi
}
