package forest

import (
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"

	"github.com/otel-iforest/iforest/internal/heapsize"
)

// Builder holds scratch space for building trees so that, once warmed up,
// Build allocates only the returned Tree and its exact-size words, and
// Forest.Rebuild nothing. A Builder is not safe for concurrent use.
type Builder struct {
	dims  int
	idx   []uint16 // row indices of the sample, partitioned in place per node
	words []uint32 // the tree under construction
	// With keepBoxes, every split carries its data's range on every
	// feature (lo, hi pairs, 2*dims words) for multivariate ScoreAsInserted.
	keepBoxes bool
	boxes     bool // for the tree under construction
	// Scratch for picking among non-constant features at a node.
	cand       []uint16
	cmin, cmax []float32

	view Tree // the last tree built, a view of words

	// Per-Build state, cleared afterwards so the Builder retains no caller data.
	sample []float32
	rng    *rand.Rand
	limit  int
	depth  int // deepest leaf so far
}

// NewBuilder returns a Builder for samples with dims features.
func NewBuilder(dims int) *Builder {
	if dims < 1 || dims > MaxFeatures {
		panic(fmt.Sprintf("forest: dims %d out of range [1, %d]", dims, MaxFeatures))
	}
	return &Builder{dims: dims}
}

// MemoryBytes approximates the bytes held by the Builder's scratch space.
func (b *Builder) MemoryBytes() int {
	return heapsize.Of(2*cap(b.idx), false) + heapsize.Of(4*cap(b.words), false) +
		heapsize.Of(2*cap(b.cand), false) + heapsize.Of(4*cap(b.cmin), false) + heapsize.Of(4*cap(b.cmax), false) + 160
}

// KeepBoxes makes the trees built from now on record each split's data
// range on every feature, not only on its split feature. It costs 8*dims
// bytes per split and lets ScoreAsInserted see a point that is beyond the
// data on a feature the split is not on. Only useful for dims > 1; a tree
// too large for its boxes' words to be linked (thousands of features and
// samples) is built without them.
func (b *Builder) KeepBoxes(on bool) { b.keepBoxes = on && b.dims > 1 }

// Build builds one isolation tree from all rows of sample (row-major, len =
// rows*dims, 1 <= rows <= MaxSampleSize); drawing the subsample is the
// caller's job. rng drives the split choices. The height limit is
// ceil(log2(rows)), as in the paper. sample is not retained.
//
// Build panics if len(sample) is not a positive multiple of dims or holds
// more than MaxSampleSize rows. Values should be finite: NaNs always go left
// (they are ignored when choosing a split) and infinite ranges degrade to
// splits at the range's minimum.
func (b *Builder) Build(sample []float32, rng *rand.Rand) *Tree {
	return b.build(sample, rng).clone()
}

// build is Build into the Builder's scratch space: the tree it returns is a
// view that the next build overwrites (see Forest.Rebuild).
func (b *Builder) build(sample []float32, rng *rand.Rand) *Tree {
	d := b.dims
	rows := len(sample) / d
	if rows < 1 || rows*d != len(sample) {
		panic(fmt.Sprintf("forest: sample length %d is not a positive multiple of dims %d", len(sample), d))
	}
	if rows > MaxSampleSize {
		panic(fmt.Sprintf("forest: sample of %d rows exceeds MaxSampleSize %d", rows, MaxSampleSize))
	}
	b.sample, b.rng = sample, rng
	b.limit = bits.Len(uint(rows - 1)) // ceil(log2 rows)
	b.idx = b.idx[:0]
	for i := range rows {
		b.idx = append(b.idx, uint16(i))
	}
	b.boxes = b.keepBoxes && (rows-1)*(splitSize+2*d)+rows <= maxSubtree
	b.words, b.depth = b.words[:0], 0
	b.grow(0, rows, 0)
	b.sample, b.rng = nil, nil
	t := &b.view
	*t = Tree{words: b.words, invC: normaliser(rows), psi: int32(rows), depth: int32(b.depth)}
	if b.boxes {
		t.boxDims = int32(d)
	}
	return t
}

// grow appends the subtree over the sample rows idx[lo:hi] at the given
// depth, in pre-order: a split, its left subtree, its right subtree.
func (b *Builder) grow(lo, hi, depth int) {
	size := hi - lo
	if size <= 1 || depth >= b.limit {
		b.leaf(lo, hi, depth)
		return
	}
	f := b.rng.IntN(b.dims)
	mn, mx := b.rangeOf(f, lo, hi)
	if !(mn < mx) {
		// The paper's tree would never split here; re-drawing uniformly among
		// the features that do vary keeps the split uniform over usable
		// features (and is what scikit-learn's splitter amounts to).
		var ok bool
		f, mn, mx, ok = b.pickNonConstant(lo, hi)
		if !ok {
			b.leaf(lo, hi, depth)
			return
		}
	}
	thr := drawThreshold(mn, mx, b.rng)
	mid := b.partition(f, thr, lo, hi)

	at := len(b.words)
	b.words = append(b.words, 0, math.Float32bits(thr), encodeRange(thr, mn, mx))
	b.box(lo, hi)
	b.grow(lo, mid, depth+1)
	b.words[at] = splitWord(f, len(b.words)-at-b.stride())
	b.grow(mid, hi, depth+1)
}

func (b *Builder) stride() int {
	if b.boxes {
		return splitSize + 2*b.dims
	}
	return splitSize
}

// box appends the box of rows idx[lo:hi], if boxes are kept.
func (b *Builder) box(lo, hi int) {
	if !b.boxes {
		return
	}
	for g := range b.dims {
		mn, mx := b.rangeOf(g, lo, hi)
		b.words = append(b.words, math.Float32bits(mn), math.Float32bits(mx))
	}
}

// leaf appends a leaf over rows idx[lo:hi]. A root leaf keeps its data
// range (on the one feature of a one-feature tree, else unbounded) and its
// box, so that ScoreAsInserted sees a point beyond what it holds, e.g. a
// series that was constant until now.
func (b *Builder) leaf(lo, hi, depth int) {
	root := len(b.words) == 0
	b.words = append(b.words, leafWord(depth, hi-lo))
	b.depth = max(b.depth, depth)
	if !root {
		return
	}
	mn, mx := float32(math.Inf(-1)), float32(math.Inf(1))
	if b.dims == 1 {
		mn, mx = b.rangeOf(0, lo, hi)
	}
	b.words = append(b.words, math.Float32bits(mn), math.Float32bits(mx))
	b.box(lo, hi)
}

// rangeOf returns the min and max of feature f over idx[lo:hi], ignoring NaNs
// (all-NaN gives mn > mx, i.e. "constant").
func (b *Builder) rangeOf(f, lo, hi int) (mn, mx float32) {
	mn, mx = float32(math.Inf(1)), float32(math.Inf(-1))
	d, s := b.dims, b.sample
	for _, r := range b.idx[lo:hi] {
		v := s[int(r)*d+f]
		if v < mn {
			mn = v
		}
		if v > mx {
			mx = v
		}
	}
	return mn, mx
}

// pickNonConstant chooses uniformly among the features with non-zero range
// over idx[lo:hi]; ok is false if there is none.
func (b *Builder) pickNonConstant(lo, hi int) (f int, mn, mx float32, ok bool) {
	b.cand, b.cmin, b.cmax = b.cand[:0], b.cmin[:0], b.cmax[:0]
	for g := range b.dims {
		lo32, hi32 := b.rangeOf(g, lo, hi)
		if lo32 < hi32 {
			b.cand = append(b.cand, uint16(g))
			b.cmin = append(b.cmin, lo32)
			b.cmax = append(b.cmax, hi32)
		}
	}
	if len(b.cand) == 0 {
		return 0, 0, 0, false
	}
	k := b.rng.IntN(len(b.cand))
	return int(b.cand[k]), b.cmin[k], b.cmax[k], true
}

// drawThreshold draws a split value uniformly in [mn, mx) in float64 and
// rounds it down to float32, which keeps mn <= thr < mx in float32: the
// minimum goes left and the maximum goes right, so both children are
// non-empty.
func drawThreshold(mn, mx float32, rng *rand.Rand) float32 {
	lo, hi := float64(mn), float64(mx)
	// The explicit float64 conversion forbids fusing into an FMA, keeping
	// trees bit-identical across architectures.
	v := lo + float64(rng.Float64()*(hi-lo))
	if !(v >= lo && v < hi) {
		// Rounding can land on hi; infinite ranges give Inf/NaN.
		v = lo
	}
	return floorFloat32(v)
}

// floorFloat32 returns the largest float32 <= v. For float32 inputs x,
// x <= v iff x <= floorFloat32(v), so routing is unchanged by the rounding.
// A zero result is always +0, which the integer comparisons in score.go
// rely on.
func floorFloat32(v float64) float32 {
	t := float32(v)
	if float64(t) > v {
		t = math.Nextafter32(t, float32(math.Inf(-1)))
	}
	if t == 0 {
		t = 0
	}
	return t
}

// partition reorders idx[lo:hi] so rows with x[f] <= thr come first and
// returns the boundary. NaN goes left, as in scoring (x > thr is false).
//
// Branch-free Lomuto: every element is swapped to the boundary and the
// boundary advances only for left rows. The side of a random split is
// unpredictable, so this beats a branching partition severalfold.
func (b *Builder) partition(f int, thr float32, lo, hi int) int {
	d, s, idx := b.dims, b.sample, b.idx
	j := lo
	for k := lo; k < hi; k++ {
		r := idx[k]
		idx[k] = idx[j]
		idx[j] = r
		j += b2i(!(s[int(r)*d+f] > thr))
	}
	return j
}
