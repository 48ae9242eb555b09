package detector

// Damping of repeated flags (IncidentConfig.SuppressRepeats).
//
// An episode of trouble rarely stays above the threshold: it flags, dips,
// flags again. Each renewed flag is another alert to a person, and no
// news. Within SuppressRepeats points of the last flagged point, a flag
// that does not continue an unbroken run of flags and does not beat the
// episode's highest score so far has its score halved, which takes it
// under the threshold. Runs stay flagged point by point (a spike of five
// points is five anomalous points), and an episode that gets worse is
// still reported.

// repeats is one series' state for it.
type repeats struct {
	since int32 // points since the last flag, while an episode is open
	open  bool
	prev  bool // the previous point was reported as flagged
	peak  float64
}

// damp returns the score to report for a raw score and updates the state.
func (r *repeats) damp(window int, score, thr float64) float64 {
	if window <= 0 {
		return score
	}
	flag := score >= thr
	out := score
	if flag && r.open && !r.prev && score <= r.peak {
		out = score / 2
	}
	switch {
	case flag:
		if !r.open {
			r.open, r.peak = true, 0
		}
		r.since = 0
		r.peak = max(r.peak, score)
	case r.open:
		r.since++
		if int(r.since) >= window {
			r.open = false
		}
	}
	// A halved flag does not start a run: the rest of a renewed run is no
	// more news than its first point.
	r.prev = out >= thr
	return out
}
