package forest

import (
	"math"
	"unsafe"
)

// Scoring kernels.
//
// A straightforward walk (pathLen) is bound by the latency of its dependent
// loads and by mispredicting where each path ends. The kernels below walk
// several trees in lockstep for a fixed number of steps (the deepest leaf
// among them); a path that reaches a leaf early just stays there. This gives
// the CPU independent load chains and a loop trip count that is known in
// advance.
//
// They read nodes through unsafe pointers to avoid a bounds check per step
// and so that each node is one 8-byte load. This is sound because trees are
// only built by Build/ImportTree/DecodeTree, which guarantee that every
// internal node's children a and a+1 are inside the tree, and a forest's
// trees change only under its owner's lock (never during a walk); the walks
// start at the root and only ever follow child links or stay on a leaf.
//
// Results equal summing pathLen(t)*t.invC up to the order of the additions.

const leafMin = uint64(leafFeat) << 48 // node words >= leafMin are leaves

// The word view reads the first 8 bytes of each 16-byte node (thr, a, feat;
// this fails to compile if the layout changes) and needs little-endian field
// order (checked at run time; big-endian machines use the plain walk).
var _ = [1]struct{}{}[unsafe.Sizeof(node{})-16]
var _ = [1]struct{}{}[unsafe.Offsetof(node{}.feat)-6]

var wordView = func() bool {
	n := node{thr: 1.5, a: 0x1234, feat: 0x5678}
	return nodeWord(unsafe.Pointer(&n), 0) == 0x5678_1234_00000000|uint64(math.Float32bits(1.5))
}()

// nodeWord loads the first word of node i of the tree starting at p:
// bits 0-31 thr, 32-47 a, 48-63 feat (the struct's little-endian layout).
func nodeWord(p unsafe.Pointer, i int) uint64 {
	return *(*uint64)(unsafe.Add(p, i*16))
}

func nodesPtr(t *Tree) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(t.nodes)) }

// One-feature forests compare in the integer domain, which is cheaper than
// moving each threshold into a float register.
//
// With c = ceil32(x), x > thr iff c > thr for every float32 thr. If c >= +0,
// c > thr iff int32(bits(thr)) < int32(bits(c)) (negative thresholds have
// negative bit patterns). If c < 0, c > thr iff uint32(bits(thr)) >
// uint32(bits(c)) (both negative: larger magnitude is a larger unsigned
// pattern; non-negative thresholds have smaller unsigned patterns). This
// needs thresholds to never be -0, which floorFloat32 guarantees.

// key1 returns the comparison key for x and whether the signed (c >= 0)
// comparison applies. NaN goes left, as in pathLen (x > thr is false).
func key1(x float64) (key uint32, signed bool) {
	if x != x {
		return 1 << 31, true // int32 min: no threshold is below it
	}
	c := float32(x)
	if float64(c) < x {
		c = math.Nextafter32(c, float32(math.Inf(1)))
	}
	if c == 0 {
		return 0, true // -0 behaves as +0
	}
	b := math.Float32bits(c)
	return b, int32(b) >= 0
}

func stepSigned(p unsafe.Pointer, i int, c int32) int {
	v := nodeWord(p, i)
	if v < leafMin {
		i = int(uint16(v>>32)) + b2i(int32(uint32(v)) < c)
	}
	return i
}

func stepUnsigned(p unsafe.Pointer, i int, c uint32) int {
	v := nodeWord(p, i)
	if v < leafMin {
		i = int(uint16(v>>32)) + b2i(uint32(v) > c)
	}
	return i
}

// group holds the node pointers of up to 8 trees walked together and, on
// return, the path length h of the leaf each ended in.
type group struct {
	p [8]unsafe.Pointer
	h [8]float64
}

// finish records the path lengths of the leaves the walks ended in.
func (g *group) finish(i0, i1, i2, i3, i4, i5, i6, i7 int) {
	g.h = [8]float64{
		leafWordLen(nodeWord(g.p[0], i0)), leafWordLen(nodeWord(g.p[1], i1)),
		leafWordLen(nodeWord(g.p[2], i2)), leafWordLen(nodeWord(g.p[3], i3)),
		leafWordLen(nodeWord(g.p[4], i4)), leafWordLen(nodeWord(g.p[5], i5)),
		leafWordLen(nodeWord(g.p[6], i6)), leafWordLen(nodeWord(g.p[7], i7)),
	}
}

// leafWordLen is leafLen for a node loaded by nodeWord.
func leafWordLen(v uint64) float64 {
	return float64(math.Float32frombits(uint32(v))) + cTable[uint16(v>>32)]
}

// load prepares trees (1 <= len <= 8) and returns the number of steps
// needed. Unused slots repeat the first tree so that a short final group
// can still use the 8-wide walk (its chains run in parallel, so the padding
// costs less than walking the remainder one tree at a time).
func (g *group) load(trees []*Tree) int {
	steps := 0
	for j, t := range trees {
		g.p[j] = nodesPtr(t)
		steps = max(steps, int(t.depth))
	}
	for j := len(trees); j < len(g.p); j++ {
		g.p[j] = g.p[0]
	}
	return steps
}

// acc accumulates h_t/c(psi_t) in one lane per group slot: independent
// additions instead of one long dependent chain of 100.
type acc [8]float64

func (a *acc) add(g *group, trees []*Tree) {
	for j, t := range trees {
		a[j] += g.h[j] * t.invC
	}
}

func (a *acc) total() float64 {
	return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))
}

// Eight chains measured fastest (4 and 6 were 10-15% slower; more would
// spill most of the state on amd64). The walks are kept out of line so
// their register allocation does not compete with the caller's.

//go:noinline
func walk8Signed(g *group, steps int, c int32) {
	p0, p1, p2, p3, p4, p5, p6, p7 := g.p[0], g.p[1], g.p[2], g.p[3], g.p[4], g.p[5], g.p[6], g.p[7]
	var i0, i1, i2, i3, i4, i5, i6, i7 int
	for range steps {
		i0 = stepSigned(p0, i0, c)
		i1 = stepSigned(p1, i1, c)
		i2 = stepSigned(p2, i2, c)
		i3 = stepSigned(p3, i3, c)
		i4 = stepSigned(p4, i4, c)
		i5 = stepSigned(p5, i5, c)
		i6 = stepSigned(p6, i6, c)
		i7 = stepSigned(p7, i7, c)
	}
	g.finish(i0, i1, i2, i3, i4, i5, i6, i7)
}

//go:noinline
func walk8Unsigned(g *group, steps int, c uint32) {
	p0, p1, p2, p3, p4, p5, p6, p7 := g.p[0], g.p[1], g.p[2], g.p[3], g.p[4], g.p[5], g.p[6], g.p[7]
	var i0, i1, i2, i3, i4, i5, i6, i7 int
	for range steps {
		i0 = stepUnsigned(p0, i0, c)
		i1 = stepUnsigned(p1, i1, c)
		i2 = stepUnsigned(p2, i2, c)
		i3 = stepUnsigned(p3, i3, c)
		i4 = stepUnsigned(p4, i4, c)
		i5 = stepUnsigned(p5, i5, c)
		i6 = stepUnsigned(p6, i6, c)
		i7 = stepUnsigned(p7, i7, c)
	}
	g.finish(i0, i1, i2, i3, i4, i5, i6, i7)
}

// sumPathsPlain is the reference: sum_t h_t(x)/c(psi_t) by plain walks.
func sumPathsPlain(trees []*Tree, x []float64) float64 {
	var s float64
	for _, t := range trees {
		s += pathLen(t.nodes, x) * t.invC
	}
	return s
}

// sumPaths1 returns sum_t h_t(x0)/c(psi_t) for a one-feature forest.
func sumPaths1(trees []*Tree, x0 float64) float64 {
	if !wordView {
		return sumPathsPlain(trees, []float64{x0})
	}
	key, signed := key1(x0)
	var g group
	var a acc
	for len(trees) > 0 {
		ts := trees[:min(len(trees), 8)]
		steps := g.load(ts)
		if signed {
			walk8Signed(&g, steps, int32(key))
		} else {
			walk8Unsigned(&g, steps, key)
		}
		a.add(&g, ts)
		trees = trees[len(ts):]
	}
	return a.total()
}

// Multi-feature forests compare in float32. x is first mapped to cx with
// cx[f] = prev32(ceil32(x[f])), for which x[f] > thr iff cx[f] >= thr for
// every float32 thr (both sides live on the float32 grid). NaN (and -Inf,
// which is never > thr) map to NaN, which is never >= anything: left.

// maxFastDims bounds the stack buffer of converted features; the uint8
// feature index into it needs no bounds check. Wider forests use pathLen.
const maxFastDims = 256

func prepX(x []float64, cx *[maxFastDims]float32) {
	for f, v := range x {
		c := float32(v)
		if float64(c) < v {
			c = math.Nextafter32(c, float32(math.Inf(1)))
		}
		if c == float32(math.Inf(-1)) || v != v {
			cx[uint8(f)] = float32(math.NaN())
			continue
		}
		cx[uint8(f)] = math.Nextafter32(c, float32(math.Inf(-1)))
	}
}

func stepN(p unsafe.Pointer, i int, cx *[maxFastDims]float32) int {
	v := nodeWord(p, i)
	if v < leafMin {
		i = int(uint16(v>>32)) + b2i(cx[uint8(v>>48)] >= math.Float32frombits(uint32(v)))
	}
	return i
}

//go:noinline
func walk8N(g *group, steps int, cx *[maxFastDims]float32) {
	p0, p1, p2, p3, p4, p5, p6, p7 := g.p[0], g.p[1], g.p[2], g.p[3], g.p[4], g.p[5], g.p[6], g.p[7]
	var i0, i1, i2, i3, i4, i5, i6, i7 int
	for range steps {
		i0 = stepN(p0, i0, cx)
		i1 = stepN(p1, i1, cx)
		i2 = stepN(p2, i2, cx)
		i3 = stepN(p3, i3, cx)
		i4 = stepN(p4, i4, cx)
		i5 = stepN(p5, i5, cx)
		i6 = stepN(p6, i6, cx)
		i7 = stepN(p7, i7, cx)
	}
	g.finish(i0, i1, i2, i3, i4, i5, i6, i7)
}

// sumPathsN returns sum_t h_t(x)/c(psi_t); x has the forest's dims.
func sumPathsN(trees []*Tree, x []float64) float64 {
	if len(x) > maxFastDims || !wordView {
		return sumPathsPlain(trees, x)
	}
	var cx [maxFastDims]float32
	prepX(x, &cx)
	var g group
	var a acc
	for len(trees) > 0 {
		ts := trees[:min(len(trees), 8)]
		steps := g.load(ts)
		walk8N(&g, steps, &cx)
		a.add(&g, ts)
		trees = trees[len(ts):]
	}
	return a.total()
}
