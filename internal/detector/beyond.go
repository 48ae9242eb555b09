package detector

import "math"

// Scores of values beyond the window's range.
//
// An isolation score has a ceiling: a point cut off by the first split of
// every tree scores 2^(-1/c(psi)) (0.89 at sample_size 32), however far out
// it is. Scored as if inserted, values well beyond the data all end near
// that ceiling, so a burst a little past the usual peaks and one ten times
// higher tie, and no threshold can tell them apart. One-input series
// therefore lift the score of a value beyond the range of their window by
// r/(r+beyondScale) of its distance to 1, where r is the distance beyond
// the range in units of the range's width: 15% of the width beyond closes
// half the gap, a value far out approaches 1. Within the range the score is
// the forest's.

const (
	// beyondScale is the distance beyond the range, in range widths, that
	// closes half of a score's gap to 1.
	beyondScale = 0.15
	// beyondMinRows: a range of fewer points is no yardstick yet (with
	// 128, generated copies of the seed scenario flagged a few of their
	// early normal points).
	beyondMinRows = 256
)

// hasRange says whether a model tracks its window's range.
func (s *series) hasRange() bool { return s.kind != Vector && s.dims == 1 }

// The range is kept exact over the sliding window, with how many of the
// window's values sit at each end, so that the window is scanned again only
// when the last copy of an extreme leaves it: a few points in a thousand on
// most series (a scan at every tree build cost 4% of the processor's time).
// It is a function of the window alone, so a restored model recomputes it.

// addToRange takes in v, added to the window.
func (s *series) addToRange(v float32) {
	switch {
	case s.nlo == 0 || v < s.lo:
		s.lo, s.nlo = v, 1
	case v == s.lo:
		s.nlo++
	}
	switch {
	case s.nhi == 0 || v > s.hi:
		s.hi, s.nhi = v, 1
	case v == s.hi:
		s.nhi++
	}
}

// dropFromRange accounts for old leaving the window (after it was
// overwritten, so a rescan sees the window without it).
func (s *series) dropFromRange(old float32) {
	if old == s.lo {
		s.nlo--
	}
	if old == s.hi {
		s.nhi--
	}
	if s.nlo == 0 || s.nhi == 0 {
		s.rescanRange()
	}
}

// rescanRange recomputes the range from the window.
func (s *series) rescanRange() {
	s.nlo, s.nhi = 0, 0
	for _, v := range s.win[:s.rows*s.dims] {
		s.addToRange(v)
	}
}

// beyond returns score lifted for how far v lies beyond the window's range.
func (s *series) beyond(v, score float64) float64 {
	if s.lr != nil {
		score = s.lr.far(v, score)
	}
	ext, out := s.outside(v)
	if !out {
		return score
	}
	lo, hi := float64(s.lo), float64(s.hi)
	lift := 1.0 // beyond a constant window: as far as it gets
	if hi > lo {
		r := ext / (hi - lo)
		lift = r / (r + beyondScale)
	}
	return score + (1-score)*lift
}

// outside reports whether beyond lifts the score of v for the window's
// range, and by how much v lies beyond it.
func (s *series) outside(v float64) (ext float64, out bool) {
	if !s.hasRange() || s.rows < beyondMinRows {
		return 0, false
	}
	// Compare at the window's float32 precision: rounding is not news.
	lo, hi, v32 := float64(s.lo), float64(s.hi), float64(float32(v))
	switch {
	case v32 > hi:
		return v - hi, true
	case v32 < lo:
		return lo - v, true
	}
	return 0, false
}

// lifts reports whether beyond would lift a score of v.
func (s *series) lifts(v float64) bool {
	_, out := s.outside(v)
	return out || s.lr != nil && s.lr.farOut(v)
}

// beyondLearn is how far beyond its window's range, in range widths, a
// one-input model learns a value: one further out is learned at that
// distance (see winsorize). On NAB anything from 4 to 10 scores as without
// the bound (53.4 standard); 2 and 3 lose 0.2.
const beyondLearn = 4.0

// winsorize returns v as the model learns it: at most beyondLearn range
// widths beyond the window's range. A model learns every point, extremes
// included, and a single value near float64's limits (or any value far out)
// would otherwise stretch the window's range and its trees' for as long as
// it stays in the window: later spikes would fall inside that range and
// lose the lift beyond it, the lookback mean would carry it into the next
// points, and the expected band would be centred on it. A real level
// shift is learned a few points later instead (the range grows by a factor
// of 1 + beyondLearn per point at most). A window that has no width yet
// (all its values 0) has no yardstick: its values are taken as they are.
func (s *series) winsorize(v float64) float64 {
	lo, hi := float64(s.lo), float64(s.hi)
	w := hi - lo
	if w <= 0 {
		w = 1e-3 * max(math.Abs(lo), math.Abs(hi))
	}
	if w == 0 {
		return v
	}
	return max(lo-beyondLearn*w, min(hi+beyondLearn*w, v))
}
