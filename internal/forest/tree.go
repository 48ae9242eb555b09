// Package forest implements the isolation forest of Liu, Ting and Zhou
// ("Isolation Forest", ICDM 2008) with a compact, allocation-free scorer.
//
// A tree is a stream of 32-bit words in pre-order, 12 bytes per split and
// 4 per leaf (see node layout below), and a forest keeps all its trees'
// words in one slab, so that a streaming detector can keep one forest per
// time series within a small memory budget: on Gaussian data a psi=32 tree
// has about 15 splits and 16 leaves (~240 bytes) and a psi=256 tree about
// 80 splits and 80 leaves (~1.2 KB).
package forest

import (
	"math"
	"unsafe"

	"github.com/otel-iforest/iforest/internal/heapsize"
)

const (
	// MaxSampleSize is the largest per-tree sample: a leaf's sample count
	// is 16 bits.
	MaxSampleSize = 32768
	// MaxFeatures is the largest supported dimensionality: feature indices
	// are 12 bits and the largest value marks a leaf.
	MaxFeatures = leafMark

	// eulerGamma is the Euler–Mascheroni constant as used by the paper's c(n)
	// (and by scikit-learn, whose scores we reproduce).
	eulerGamma = 0.5772156649015329
)

// Node layout.
//
// A split is three words:
//
//	w0: feature (bits 0-11) | bytes of its left subtree (bits 12-31)
//	w1: threshold (float32): go left iff x[feature] <= threshold
//	w2: the range [lo, hi] of the split's training data on its feature,
//	    relative to the threshold (see encodeRange), for ScoreAsInserted
//
// Its left child follows it; its right child follows the left subtree. A
// leaf is one word:
//
//	w0: leafMark (bits 0-11) | depth (bits 12-15) | samples (bits 16-31)
//
// which is all its path length, depth + c(samples), needs. A tree that is a
// single leaf (all its sample was one point) keeps its data range on
// feature 0 in two more words (lo, hi as float32), so that any other value
// can be cut off from it (ScoreAsInserted). With boxes (Builder.KeepBoxes)
// every split, and a single-leaf root, is followed by its box: the range of
// its data on every feature, 2*dims float32 words.
//
// Words instead of 16-byte nodes with child links halve a model: leaves
// (half the nodes) hold only what their path length needs, a split's left
// child needs no link, and the range is 32 bits: two distances from the
// threshold to 8 bits of precision (see Ranges). Every walk starts at a root and follows only links a builder
// or decoder wrote and checked, which is what lets score.go read nodes
// through unsafe pointers. The layout makes a step cheap: the low byte
// of the first word is the feature a lockstep walk looks up (255 at a
// leaf), and the bytes to the right child are one shift away.
const (
	featBits  = 12
	leafMark  = 1<<featBits - 1 // the feature of a leaf
	splitSize = 3               // words of a split without a box
	maxDepth  = 15
	// maxSubtree bounds the words of a left subtree.
	maxSubtree = (1<<(32-featBits) - 1) / 4
)

func isLeaf(w0 uint32) bool { return w0&leafMark == leafMark }

func leafWord(depth, samples int) uint32 {
	return leafMark | uint32(depth)<<featBits | uint32(samples)<<16
}

func splitWord(feat, leftWords int) uint32 { return uint32(feat) | uint32(4*leftWords)<<featBits }

func leafDepth(w0 uint32) int   { return int(w0 >> featBits & 0xF) }
func leafSamples(w0 uint32) int { return int(w0 >> 16) }
func splitFeat(w0 uint32) int   { return int(w0 & leafMark) }
func leftWords(w0 uint32) int   { return int(w0>>featBits) / 4 }

// leafLen is h at a leaf: its depth plus c(size), in float64 so that the
// sum is exact to the last bit of c(size) (this is what scikit-learn
// computes).
func leafLen(w0 uint32) float64 {
	return float64(w0>>featBits&0xF) + cTable[w0>>16]
}

// cTable[n] = AvgPathLength(n) for every possible leaf size, so that a leaf's
// path length costs one load instead of a logarithm; invCTable[n] is
// normaliser(n), for the same reason.
var cTable, invCTable = func() (*[MaxSampleSize + 1]float64, *[MaxSampleSize + 1]float64) {
	var c, inv [MaxSampleSize + 1]float64
	for n := range c {
		c[n] = AvgPathLength(n)
		inv[n] = normaliser(n)
	}
	return &c, &inv
}()

// AvgPathLength returns c(n), the average path length of an unsuccessful
// search in a binary search tree of n items (the paper's normaliser and the
// correction added at leaves that still hold n > 1 samples):
// c(n) = 2(ln(n-1) + γ) - 2(n-1)/n, with c(0) = c(1) = 0 and c(2) = 1.
func AvgPathLength(n int) float64 {
	switch {
	case n <= 1:
		return 0
	case n == 2:
		return 1
	}
	fn := float64(n)
	return 2*(math.Log(fn-1)+eulerGamma) - 2*(fn-1)/fn
}

// normaliser returns 1/c(psi). A one-sample tree is a single leaf with
// h = 0, so its normaliser is irrelevant; 1 avoids dividing by c(1) = 0.
func normaliser(psi int) float64 {
	if psi < 2 {
		return 1
	}
	return 1 / AvgPathLength(psi)
}

// Ranges.
//
// A split's data range [lo, hi] contains its threshold t, and is kept as
// the distances t-lo and hi-t, each a float32 cut to its top 16 bits (a
// bfloat16: 8 bits of precision), rounded up: the kept range holds the
// split's data and is wider than it by less than 1/128 of each distance
// (a value just beyond the data by less than that is not cut off, which
// changes its path length by less than a hundredth of a level). Decoding
// is a shift, a mask and an addition each: it is done at every step of
// ScoreAsInserted. An unbounded range (imported trees do not know their
// data's ranges) is kept as infinite distances.

// unboundedWord keeps an unbounded range.
const unboundedWord = 0x7F80_7F80

// decodeRange returns the range stored in w for threshold thr.
func decodeRange(w uint32, thr float32) (lo, hi float32) {
	return thr - math.Float32frombits(w<<16), thr + math.Float32frombits(w&0xFFFF_0000)
}

// storedRange is decodeRange with an unbounded range as (-Inf, +Inf) also
// for an infinite threshold (where decodeRange gives a NaN end, which no
// value is outside of either): what a tree's binary form records.
func storedRange(w uint32, thr float32) (lo, hi float32) {
	if w == unboundedWord {
		return float32(math.Inf(-1)), float32(math.Inf(1))
	}
	return decodeRange(w, thr)
}

// encodeRange returns the stored range around thr that holds [lo, hi]
// (lo <= thr <= hi; infinite ends make it unbounded) with the smallest
// distances. Encoding a decoded range gives the same word back (snapshots
// restore exactly): smaller distances do not hold it.
func encodeRange(thr, lo, hi float32) uint32 {
	dl := minDistance(thr, lo, true)
	dh := minDistance(thr, hi, false)
	w := dh<<16 | dl
	if l, h := decodeRange(w, thr); math.IsInf(float64(l), 0) || math.IsInf(float64(h), 0) {
		return unboundedWord // what its binary form says: keep it so
	}
	return w
}

// bf16Inf is +Inf as a bfloat16.
const bf16Inf = 0x7F80

// minDistance returns the smallest bfloat16 distance (as bits) by which thr,
// moved down to lo (or up to hi), reaches end as decodeRange computes it.
func minDistance(thr, end float32, lo bool) uint32 {
	reaches := func(q uint32) bool {
		d := math.Float32frombits(q << 16)
		if lo {
			return thr-d <= end
		}
		return thr+d >= end
	}
	m := math.Abs(float64(end) - float64(thr))
	if m != m || m > math.MaxFloat32 {
		return bf16Inf
	}
	// A first guess from the distance in float64, rounded up; decoding
	// rounds, so step to the exact smallest (it is monotonic in the bits).
	f := float32(m)
	if float64(f) < m {
		f = math.Nextafter32(f, float32(math.Inf(1)))
	}
	q := min((math.Float32bits(f)+0xFFFF)>>16, bf16Inf)
	for q < bf16Inf && !reaches(q) {
		q++
	}
	for q > 0 && reaches(q-1) {
		q--
	}
	return q
}

// Tree is one isolation tree. A tree from Build, ImportTree or DecodeTree
// is immutable and safe for concurrent use by any number of readers; the
// trees Forest.Trees returns are views into its storage and change with it.
type Tree struct {
	words []uint32
	// invC is 1/c(psi) of this tree's own sample size, so trees built on
	// different sample sizes (e.g. during a rolling refit while the history
	// is still short) are each normalised correctly.
	invC  float64
	psi   int32
	depth int32 // deepest leaf; bounds the fixed-step walks in score.go
	// boxDims is the number of features of the boxes that follow each
	// split (Builder.KeepBoxes), 0 without boxes.
	boxDims int32
}

// stride is the number of words of a split (with its box).
func (t *Tree) stride() int { return splitSize + 2*int(t.boxDims) }

// PathLength returns h(x): the depth of the leaf x falls into plus
// c(leaf size). x must have at least as many elements as the tree's
// highest feature index + 1.
func (t *Tree) PathLength(x []float64) float64 {
	return pathLen(t.words, t.stride(), x)
}

// NumNodes returns the number of nodes (splits + leaves).
func (t *Tree) NumNodes() int {
	n := 0
	t.each(func(int, int) { n++ })
	return n
}

// SampleSize returns the number of training samples the tree was built on.
func (t *Tree) SampleSize() int { return int(t.psi) }

// MemoryBytes approximates the heap retained by a tree of its own (from
// Build, ImportTree or DecodeTree): its words and the Tree header, as the
// allocator rounds them. A forest's trees are views into its storage; see
// Forest.MemoryBytes.
func (t *Tree) MemoryBytes() int {
	return heapsize.Of(4*cap(t.words), false) + heapsize.Of(int(unsafe.Sizeof(Tree{})), true)
}

// Depth returns the depth of the deepest leaf.
func (t *Tree) Depth() int { return int(t.depth) }

// each calls fn(offset, depth) for every node in pre-order.
func (t *Tree) each(fn func(o, depth int)) {
	stride := t.stride()
	var walk func(o, depth int) int
	walk = func(o, depth int) int {
		fn(o, depth)
		w0 := t.words[o]
		if isLeaf(w0) {
			if o == 0 {
				return o + rootLeafSize(stride)
			}
			return o + 1
		}
		walk(o+stride, depth+1)
		return walk(o+stride+leftWords(w0), depth+1)
	}
	walk(0, 0)
}

// rootLeafSize is the words of a tree that is a single leaf: the leaf, its
// range on feature 0 and its box, if any.
func rootLeafSize(stride int) int { return stride }

// clone returns a copy of t with storage of its own (an exact-size slice).
func (t *Tree) clone() *Tree {
	c := *t
	c.words = make([]uint32, len(t.words))
	copy(c.words, t.words)
	return &c
}

// maxFeature returns the largest feature index used by a split, or -1.
func (t *Tree) maxFeature() int {
	m := -1
	t.each(func(o, _ int) {
		if w0 := t.words[o]; !isLeaf(w0) {
			m = max(m, splitFeat(w0))
		}
	})
	return m
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// pathLen walks one tree whose splits are stride words. The child step is
// branchless (index arithmetic on the comparison result) because the
// direction is data-dependent and mispredicts badly; only the leaf test
// branches, and it is well predicted.
func pathLen(words []uint32, stride int, x []float64) float64 {
	o := 0
	for {
		w0 := words[o]
		if isLeaf(w0) {
			return leafLen(w0)
		}
		thr := math.Float32frombits(words[o+1])
		o += stride + leftWords(w0)&-b2i(x[splitFeat(w0)] > float64(thr))
	}
}
