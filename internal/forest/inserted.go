package forest

import (
	"math"
	"unsafe"
)

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
// stopping chances. A tree that is a single leaf (its whole sample was
// identical) is treated alike: any other x would be cut off at the first
// split, which lets a series that was constant so far flag its first change.
// (Doing the same at every leaf of identical points made NAB's false alarms
// grow: quantised series have many such leaves, and a value next to one is
// not news.) Inside the data's ranges this equals PathLength.

// PathLengthAsInserted returns the expected h(x) had x been in the sample.
// For imported trees (no recorded ranges) it is PathLength.
func (t *Tree) PathLengthAsInserted(x []float64) float64 {
	if t.boxDims != 0 {
		return t.pathLengthAsInsertedBoxes(x)
	}
	words := t.words
	var h, stay float64 = 0, 1 // stay: probability that x is not cut off yet
	o := 0
	for depth := 1; ; depth++ {
		w0 := words[o]
		if isLeaf(w0) {
			if o == 0 && leafSamples(w0) > 1 {
				lo, hi := rootRange(words)
				h, stay = cutOff(x[0], lo, hi, depth, h, stay)
			}
			return h + stay*leafLen(w0)
		}
		f := splitFeat(w0)
		thr := math.Float32frombits(words[o+1])
		lo, hi := decodeRange(words[o+2], thr)
		v := x[f]
		if outside(v, lo, hi) {
			h, stay = cutOffOutside(v, lo, hi, depth, h, stay)
		}
		o += splitSize + leftWords(w0)&-b2i(v > float64(thr))
	}
}

// rootRange returns the data range of a tree that is a single leaf.
func rootRange(words []uint32) (lo, hi float32) {
	return math.Float32frombits(words[1]), math.Float32frombits(words[2])
}

// cutOff accounts for the chance that x is split off alone at a node with
// data range [lo, hi], ending at depth.
func cutOff(v float64, lo, hi float32, depth int, h, stay float64) (float64, float64) {
	if !outside(v, lo, hi) {
		return h, stay
	}
	return cutOffOutside(v, lo, hi, depth, h, stay)
}

// outside is the cheap test the walks make at every node (inlined): most
// points are inside most ranges. NaN is never outside.
func outside(v float64, lo, hi float32) bool {
	return v < float64(lo) || v > float64(hi)
}

func cutOffOutside(v float64, lo, hi float32, depth int, h, stay float64) (float64, float64) {
	// Ranges come from float32 training data: compare at that precision so
	// that rounding noise (a constant mean computed as 0.20000000000000284)
	// is not "beyond the data".
	if v32 := float64(float32(v)); v32 >= float64(lo) && v32 <= float64(hi) {
		return h, stay
	}
	return cutOffBeyond(v, lo, hi, depth, h, stay)
}

// cutOffBeyond is cutOffOutside for a v whose float32 rounding is known to
// be outside [lo, hi].
//
//go:noinline
func cutOffBeyond(v float64, lo32, hi32 float32, depth int, h, stay float64) (float64, float64) {
	lo, hi := float64(lo32), float64(hi32)
	ext := v - hi
	if v < lo {
		ext = lo - v
	}
	p := ext / (hi - lo + ext)
	if p != p { // ext = +Inf
		p = 1
	}
	return h + stay*p*float64(depth), stay * (1 - p)
}

// pathLengthAsInsertedBoxes is PathLengthAsInserted for trees that know
// each split's full data box, so that a point beyond the data on any
// feature is seen at every split, whatever it split on. The cut-off chance
// at a split is that of x's most outlying feature, ext_f / (range_f +
// ext_f): as if the split were on it. Averaging over features instead (the
// split's feature is drawn uniformly) dilutes a one-metric spike by the
// number of features and, in our two-metric tests, let spikes score below
// the tail of normal points.
func (t *Tree) pathLengthAsInsertedBoxes(x []float64) float64 {
	d := int(t.boxDims)
	stride := t.stride()
	words := t.words
	var h, stay float64 = 0, 1
	o := 0
	for depth := 1; ; depth++ {
		w0 := words[o]
		if isLeaf(w0) && (o != 0 || leafSamples(w0) <= 1) {
			return h + stay*leafLen(w0)
		}
		box := words[o+splitSize : o+stride]
		var p float64
		for f := 0; f < d; f++ {
			v, lo, hi := x[f], float64(math.Float32frombits(box[2*f])), float64(math.Float32frombits(box[2*f+1]))
			if v >= lo && v <= hi || v != v {
				continue
			}
			if v = float64(float32(v)); v >= lo && v <= hi {
				continue // float32 rounding noise, see cutOff
			}
			ext := v - hi
			if v < lo {
				ext = lo - v
			}
			q := ext / (hi - lo + ext)
			if q != q {
				q = 1
			}
			p = max(p, q)
		}
		if p > 0 {
			h += stay * p * float64(depth)
			stay *= 1 - p
		}
		if isLeaf(w0) {
			return h + stay*leafLen(w0)
		}
		thr := math.Float32frombits(words[o+1])
		o += stride + leftWords(w0)&-b2i(x[splitFeat(w0)] > float64(thr))
	}
}

// ScoreAsInserted is Score with PathLengthAsInserted: points beyond what a
// tree has seen score higher the further beyond they are. 0 allocs.
//
// Eight trees are walked in lockstep, as Score does (see score.go), each
// step also testing whether x is outside the split's range and, if so,
// adding the chance it would have been cut off there.
func (f *Forest) ScoreAsInserted(x []float64) float64 {
	s, _ := f.scoreAsInserted(x, 0)
	return s
}

// ScoreAsInsertedBelow is ScoreAsInserted that may stop after the first
// group of eight trees: if the forest has more and their score alone,
// 2^(-mean of h/c over them), is below floor, it returns that estimate
// and false. Otherwise it returns exactly ScoreAsInserted(x) and true. A
// caller for whom every score below floor means the same saves the walks
// of the other trees for most points. Forests that take the plain walk
// (boxed or wider than maxInsertedDims) never stop early. 0 allocs.
func (f *Forest) ScoreAsInsertedBelow(x []float64, floor float64) (score float64, complete bool) {
	return f.scoreAsInserted(x, floor)
}

func (f *Forest) scoreAsInserted(x []float64, floor float64) (float64, bool) {
	if len(f.meta) == 0 {
		return 0.5, true
	}
	x = x[:f.dims]
	var sum float64
	if f.boxed > 0 || f.dims > maxInsertedDims { // PathLengthAsInserted takes each tree as it is
		for i := range f.meta {
			t := f.view(i)
			sum += t.PathLengthAsInserted(x) * t.invC
		}
		return math.Exp2(-sum / float64(len(f.meta))), true
	}
	// The walk compares in float32, where nodes live: cx routes exactly like
	// x (see prepX), and x is beyond a split's float32 range exactly when
	// its float32 rounding rx is (the range's ends are float32 values, and
	// rounding is monotonic), which is also what cutOffOutside requires.
	var in walkIn
	in.prep(x)
	base := unsafe.Pointer(unsafe.SliceData(f.words))
	var a acc
	for trees := f.meta; len(trees) > 0; {
		ts := trees[:min(len(trees), 8)]
		steps := in.o.load(ts, f.padLeaf())
		in.h, in.stay = [8]float64{}, [8]float64{1, 1, 1, 1, 1, 1, 1, 1}
		walk8Inserted(base, steps, &in)
		for j, m := range ts {
			w0 := word(base, in.o[j])
			h, stay := in.h[j], in.stay[j]
			if m.depth == 0 && leafSamples(w0) > 1 { // the root is a leaf, with its range
				lo := math.Float32frombits(word(base, in.o[j]+4))
				hi := math.Float32frombits(word(base, in.o[j]+8))
				h, stay = cutOff(x[0], lo, hi, 1, h, stay)
			}
			a[j] += (h + stay*leafLen(w0)) * invCTable[m.psi]
		}
		trees = trees[len(ts):]
		// After the first group, with more to come: each of the eight
		// lanes holds one tree's h/c. (No score is <= 0: a floor of 0
		// costs no exponential.)
		if floor > 0 && len(trees) > 0 && len(trees) == len(f.meta)-8 {
			if s := math.Exp2(-a.total() / 8); s < floor {
				return s, false
			}
		}
	}
	return math.Exp2(-a.total() / float64(len(f.meta))), true
}

// maxInsertedDims bounds the features of the lockstep walk of
// ScoreAsInserted: its input is small enough that clearing it costs little
// (the detector's models have one to a few), and a feature index masked to
// it needs no bounds check. Wider forests take the plain walk.
const maxInsertedDims = 8

// walkIn is the state of walk8Inserted: x in three forms, the lanes, and
// each lane's path length so far and chance of not being cut off yet.
type walkIn struct {
	cx, rx  [maxInsertedDims]float32
	x       [maxInsertedDims]float64
	o       lanes8
	h, stay [8]float64
}

// prep sets the three forms of x (len <= maxInsertedDims): cx as prepX
// does, its float32 rounding rx, and x itself.
func (in *walkIn) prep(x []float64) {
	for f, v := range x[:min(len(x), maxInsertedDims)] {
		in.cx[f], in.rx[f], in.x[f] = routeKey(v), float32(v), v
	}
}

// walk8Inserted walks the lanes' trees like walk8N, adding at every split
// whose range x is outside of the chance it is cut off there (as
// cutOffBeyond). The lanes are a loop here, not eight copies of the step:
// the step is too large to be inlined, and a call per step costs more than
// the lanes' loads. At a leaf a lane stays.
func walk8Inserted(base unsafe.Pointer, steps int, in *walkIn) {
	for depth := 1; depth <= steps; depth++ {
		for k := range in.o {
			at := in.o[k]
			w0 := word(base, at)
			if isLeaf(w0) {
				continue
			}
			f := w0 & (maxInsertedDims - 1) // the feature (< dims <= maxInsertedDims)
			thr := math.Float32frombits(word(base, at+4))
			if lo, hi := decodeRange(word(base, at+8), thr); in.rx[f] < lo || in.rx[f] > hi {
				v := in.x[f]
				ext := v - float64(hi)
				if v < float64(lo) {
					ext = float64(lo) - v
				}
				p := ext / (float64(hi) - float64(lo) + ext)
				if p != p { // ext = +Inf
					p = 1
				}
				in.h[k] += in.stay[k] * p * float64(depth)
				in.stay[k] *= 1 - p
			}
			in.o[k] = splitStep(at, w0, in.cx[f] >= thr)
		}
	}
}
