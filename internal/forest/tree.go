// Package forest implements the isolation forest of Liu, Ting and Zhou
// ("Isolation Forest", ICDM 2008) with a compact, allocation-free scorer.
//
// Nodes are 16 bytes (split, child, feature and the node's data range) and
// a forest keeps all its trees' nodes in one slab, so that a streaming
// detector can keep one forest per time series within a small memory
// budget: on Gaussian data a psi=32 tree has about 45 nodes (~720 bytes)
// and a psi=256 tree about 158 nodes (~2.5 KB).
package forest

import (
	"math"
	"unsafe"

	"github.com/otel-iforest/iforest/internal/heapsize"
)

const (
	// MaxSampleSize is the largest per-tree sample: node and child indices
	// are uint16, and a tree over n samples has at most 2n-1 nodes.
	MaxSampleSize = 32768
	// MaxFeatures is the largest supported dimensionality; feature indices
	// are uint16 and 0xFFFF is reserved as the leaf marker.
	MaxFeatures = 65534

	leafFeat = 0xFFFF

	// eulerGamma is the Euler–Mascheroni constant as used by the paper's c(n)
	// (and by scikit-learn, whose scores we reproduce).
	eulerGamma = 0.5772156649015329
)

// node is one tree node packed into 16 bytes.
//
// Internal node: go left iff x[feat] <= thr; the left child is a nodes
// after this one and the right child right after it (children are adjacent
// and always follow their parent). Relative links let a walk keep one
// pointer per tree instead of a tree base and an index. [lo, hi] is the
// range of the node's training data on feat, used by ScoreAsInserted; it
// sits in the same 16 bytes so that a step of either walk touches one cache
// line (for imported trees, whose data ranges are unknown, it is [-Inf, +Inf]).
// Leaf (feat == leafFeat): thr is the leaf depth (an exact small integer in
// float32) and a is the number of training samples that reached the leaf;
// lo and hi hold its path length (see setLeafLen), or for a tree that is a
// single leaf, its data range.
type node struct {
	thr    float32
	a      uint16
	feat   uint16
	lo, hi float32
}

// cTable[n] = AvgPathLength(n) for every possible leaf size, so that a leaf's
// path length costs one load instead of a logarithm.
var cTable = func() *[MaxSampleSize + 1]float64 {
	var t [MaxSampleSize + 1]float64
	for n := range t {
		t[n] = AvgPathLength(n)
	}
	return &t
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

// Tree is one isolation tree. A tree from Build or ImportTree is immutable
// and safe for concurrent use by any number of readers; the trees of a
// Forest are views into its storage and change with it (see Forest).
type Tree struct {
	nodes []node
	// invC is 1/c(psi) of this tree's own sample size, so trees built on
	// different sample sizes (e.g. during a rolling refit while the history
	// is still short) are each normalised correctly.
	invC  float64
	psi   int32
	depth int32 // deepest leaf; bounds the fixed-step walks in score.go
	// boxes, when recorded (Builder.KeepBoxes), holds each node's data range
	// on every one of dims features: lo, hi pairs, 2*dims values per node.
	boxes []float32
	dims  int32
}

// PathLength returns h(x): the depth of the leaf x falls into plus
// c(leaf size). x must have at least as many elements as the tree's
// highest feature index + 1.
func (t *Tree) PathLength(x []float64) float64 {
	return pathLen(t.nodes, x)
}

// NumNodes returns the number of nodes (internal + leaves).
func (t *Tree) NumNodes() int { return len(t.nodes) }

// SampleSize returns the number of training samples the tree was built on.
func (t *Tree) SampleSize() int { return int(t.psi) }

// MemoryBytes approximates the heap retained by a tree of its own (from
// Build, ImportTree or DecodeTree): its node and box slices and the Tree
// header, as the allocator rounds them. A forest's trees are views into
// its storage; see Forest.MemoryBytes.
func (t *Tree) MemoryBytes() int {
	return heapsize.Of(int(unsafe.Sizeof(node{}))*cap(t.nodes), false) + heapsize.Of(4*cap(t.boxes), false) +
		heapsize.Of(int(unsafe.Sizeof(Tree{})), true)
}

// Depth returns the depth of the deepest leaf.
func (t *Tree) Depth() int { return int(t.depth) }

// newTree wraps an exactly-sized node slice.
func newTree(nodes []node, psi int) *Tree {
	t := new(Tree)
	t.init(nodes, psi)
	return t
}

// init makes t a tree (without boxes) over nodes built from psi samples.
func (t *Tree) init(nodes []node, psi int) {
	d := 0
	for _, n := range nodes {
		if n.feat == leafFeat && int(n.thr) > d {
			d = int(n.thr)
		}
	}
	*t = Tree{nodes: nodes, invC: normaliser(psi), psi: int32(psi), depth: int32(d)}
}

// clone returns a copy of t with storage of its own (exact-size slices).
func (t *Tree) clone() *Tree {
	c := *t
	c.nodes = make([]node, len(t.nodes))
	copy(c.nodes, t.nodes)
	if t.boxes != nil {
		c.boxes = make([]float32, len(t.boxes))
		copy(c.boxes, t.boxes)
	}
	return &c
}

// maxFeature returns the largest feature index used by a split, or -1.
func (t *Tree) maxFeature() int {
	m := -1
	for _, n := range t.nodes {
		if n.feat != leafFeat && int(n.feat) > m {
			m = int(n.feat)
		}
	}
	return m
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// leafLen is h at a leaf: its depth plus c(size), in float64 so that the sum
// is exact to the last bit of c(size) (this is what scikit-learn computes).
func leafLen(n node) float64 {
	return float64(n.thr) + cTable[n.a]
}

// A leaf below the root has no use for a data range (only a one-node
// tree's leaf has a cut-off, see ScoreAsInserted), so it keeps its leafLen
// in those 8 bytes instead: the lockstep walks then add a leaf's path
// length with one load rather than two dependent ones. The root leaf keeps
// its range. (Unaligned float64 access is fine: it holds no pointers.)

// setLeafLen stores leafLen(*n) in the range of leaf n, which must not be
// a root.
func (n *node) setLeafLen() { *(*float64)(unsafe.Pointer(&n.lo)) = leafLen(*n) }

// storedLeafLen returns what setLeafLen stored.
func (n *node) storedLeafLen() float64 { return *(*float64)(unsafe.Pointer(&n.lo)) }

// pathLen walks one tree. The child step is branchless (index arithmetic
// on the comparison result) because the direction is data-dependent and
// mispredicts badly; only the leaf test branches, and it is well predicted.
func pathLen(nodes []node, x []float64) float64 {
	i := 0
	for {
		n := nodes[i]
		if n.feat == leafFeat {
			return leafLen(n)
		}
		i += int(n.a) + b2i(x[n.feat] > float64(n.thr))
	}
}
