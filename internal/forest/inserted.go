package forest

import "math"

// Scoring as if inserted.
//
// An isolation tree routes a point beyond its training data's range exactly
// like the most extreme training point: a value ten times past the maximum
// scores the same as the maximum itself. For streaming detection, where the
// most important anomalies are new extremes, that is the wrong answer.
//
// ScoreAsInserted instead estimates the path length x would have had if it
// had been in the tree's sample (the view Random Cut Forests take). At a
// node whose data spans [lo, hi] on the split feature, a split drawn
// uniformly over the range extended to include x would cut x off alone with
// probability p = ext / (hi - lo + ext), where ext is x's distance outside
// [lo, hi]; x would then end at depth+1. Otherwise the split falls inside
// [lo, hi], distributed exactly like the split the tree has, and the walk
// goes on. The expected path length is the sum over the path of these
// stopping chances. Inside the data's ranges this equals PathLength.

// PathLengthAsInserted returns the expected h(x) had x been in the sample.
// For trees without recorded ranges (imported ones) it is PathLength.
func (t *Tree) PathLengthAsInserted(x []float64) float64 {
	if t.spans == nil {
		return pathLen(t.nodes, x)
	}
	nodes, spans := t.nodes, t.spans
	var h float64
	stay := 1.0 // probability that x has not been cut off yet
	depth := 0
	i := 0
	for {
		n := nodes[i]
		if n.feat == leafFeat {
			return h + stay*leafLen(n)
		}
		v := x[n.feat]
		sp := spans[i]
		lo, hi := float64(sp.lo), float64(sp.hi)
		if v < lo || v > hi {
			ext := v - hi
			if v < lo {
				ext = lo - v
			}
			p := ext / (hi - lo + ext)
			if p != p { // ext = +Inf
				p = 1
			}
			depth1 := float64(depth + 1)
			h += stay * p * depth1
			stay *= 1 - p
		}
		i = int(n.a) + b2i(v > float64(n.thr))
		depth++
	}
}

// ScoreAsInserted is Score with PathLengthAsInserted: points beyond what a
// tree has seen score higher the further beyond they are. 0 allocs.
func (f *Forest) ScoreAsInserted(x []float64) float64 {
	if len(f.trees) == 0 {
		return 0.5
	}
	x = x[:f.dims]
	var sum float64
	for _, t := range f.trees {
		sum += t.PathLengthAsInserted(x) * t.invC
	}
	return math.Exp2(-sum / float64(len(f.trees)))
}
