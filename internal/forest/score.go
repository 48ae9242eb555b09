package forest

import (
	"math"
	"unsafe"
)

// Scoring kernels.
//
// A straightforward walk (pathLen) is bound by the latency of its dependent
// loads and by mispredicting where each path ends. The kernels below walk
// eight trees in lockstep for a fixed number of steps (the deepest leaf
// among them); a path that reaches a leaf early just stays there. This gives
// the CPU independent load chains and a loop trip count that is known in
// advance.
//
// They read nodes through unsafe pointers to avoid a bounds check per step.
// A lane is one byte offset into the forest's slab, and a step adds the
// split's size, or the words of its left subtree too, so all eight lanes,
// the slab base and the key fit in registers. This is sound because trees
// are only built by Build/ImportTree/DecodeTree, which guarantee that every
// split's children are inside its tree, and a forest's trees change only
// under its owner's lock (never during a walk); the walks start at a root
// and only ever follow child links or stay on a leaf. A step reads a
// split's first two words whatever the node is: after a tree's last leaf
// come another tree's words or the slab's pad words.
//
// Results equal summing pathLen(t)*t.invC up to the order of the additions.

// word returns the word at byte offset o of the slab that starts at base.
func word(base unsafe.Pointer, o uintptr) uint32 {
	return *(*uint32)(unsafe.Add(base, o))
}

// lanes8 holds the slab offsets of up to 8 trees walked together: their
// roots before a walk and the leaves they ended in after it.
type lanes8 [8]uintptr

// load points the lanes at the roots of trees (1 <= len <= 8) and returns
// the number of steps needed. A short final group parks its unused lanes on
// a leaf (pad, the byte offset of one), where the walk's predicted leaf
// branch costs next to nothing: cheaper than walking the remainder one
// tree at a time or repeating a real tree.
func (o *lanes8) load(trees []treeMeta, pad uintptr) int {
	steps := 0
	if len(trees) == len(o) {
		for j, m := range trees[:len(o)] {
			o[j] = uintptr(m.off) * 4
			steps = max(steps, int(m.depth))
		}
		return steps
	}
	for j := range o {
		o[j] = pad
	}
	for j, m := range trees {
		o[j] = uintptr(m.off) * 4
		steps = max(steps, int(m.depth))
	}
	return steps
}

// padLeaf returns the byte offset of the slab's pad leaf, for load.
func (f *Forest) padLeaf() uintptr { return uintptr(len(f.words)-padWords) * 4 }

// acc accumulates h_t/c(psi_t) in one lane per group slot: independent
// additions instead of one long dependent chain of 100.
type acc [8]float64

func (a *acc) add(base unsafe.Pointer, o *lanes8, trees []treeMeta) {
	for j, m := range trees {
		a[j] += leafLen(word(base, o[j])) * invCTable[m.psi]
	}
}

func (a *acc) total() float64 {
	return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))
}

// sumPathsPlain is the reference: sum_t h_t(x)/c(psi_t) by plain walks.
func (f *Forest) sumPathsPlain(x []float64) float64 {
	var s float64
	for i := range f.meta {
		t := f.view(i)
		s += t.PathLength(x) * t.invC
	}
	return s
}

// splitStep is the byte offset of the next node from a split at o with
// first word w0: its left child, or its right child if right.
func splitStep(o uintptr, w0 uint32, right bool) uintptr {
	// Arithmetic, not a branch: the direction is data-dependent and a
	// branch on it mispredicts half the time. (Multiplied before it is
	// shifted, which leaves w0 in its register: see stepSigned.)
	return o + splitSize*4 + uintptr(w0*uint32(b2i(right))>>featBits)
}

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

// The leaf test is a branch on purpose: it is well predicted (most paths
// run to the last step), and on a predicted branch a lane that has reached
// its leaf does not wait for its node's load. A branch-free select, and
// leaves that loop on themselves, made every step wait: 4-25% slower.

// A one-feature forest's splits are on feature 0: a first word whose low
// byte is not 0 is a leaf's. (With eight lanes in registers there is no
// register to spare for a copy of the first word: splitStep leaves it.)

func stepSigned(base unsafe.Pointer, o uintptr, c int32) uintptr {
	w0 := word(base, o)
	next := splitStep(o, w0, int32(word(base, o+4)) < c)
	if uint8(w0) != 0 {
		next = o
	}
	return next
}

func stepUnsigned(base unsafe.Pointer, o uintptr, c uint32) uintptr {
	w0 := word(base, o)
	next := splitStep(o, w0, word(base, o+4) > c)
	if uint8(w0) != 0 {
		next = o
	}
	return next
}

// Eight chains measured fastest (4 and 6 were 10-15% slower). The walks
// are kept out of line so their register allocation does not compete with
// the caller's.

//go:noinline
func walk8Signed(base unsafe.Pointer, o *lanes8, steps int, c int32) {
	o0, o1, o2, o3, o4, o5, o6, o7 := o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]
	for ; steps > 0; steps-- {
		o0 = stepSigned(base, o0, c)
		o1 = stepSigned(base, o1, c)
		o2 = stepSigned(base, o2, c)
		o3 = stepSigned(base, o3, c)
		o4 = stepSigned(base, o4, c)
		o5 = stepSigned(base, o5, c)
		o6 = stepSigned(base, o6, c)
		o7 = stepSigned(base, o7, c)
	}
	*o = lanes8{o0, o1, o2, o3, o4, o5, o6, o7}
}

//go:noinline
func walk8Unsigned(base unsafe.Pointer, o *lanes8, steps int, c uint32) {
	o0, o1, o2, o3, o4, o5, o6, o7 := o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]
	for ; steps > 0; steps-- {
		o0 = stepUnsigned(base, o0, c)
		o1 = stepUnsigned(base, o1, c)
		o2 = stepUnsigned(base, o2, c)
		o3 = stepUnsigned(base, o3, c)
		o4 = stepUnsigned(base, o4, c)
		o5 = stepUnsigned(base, o5, c)
		o6 = stepUnsigned(base, o6, c)
		o7 = stepUnsigned(base, o7, c)
	}
	*o = lanes8{o0, o1, o2, o3, o4, o5, o6, o7}
}

// sumPaths1 returns sum_t h_t(x0)/c(psi_t) for a one-feature forest.
func (f *Forest) sumPaths1(x0 float64) float64 {
	key, signed := key1(x0)
	base := unsafe.Pointer(unsafe.SliceData(f.words))
	var o lanes8
	var a acc
	for trees := f.meta; len(trees) > 0; {
		ts := trees[:min(len(trees), 8)]
		steps := o.load(ts, f.padLeaf())
		if signed {
			walk8Signed(base, &o, steps, int32(key))
		} else {
			walk8Unsigned(base, &o, steps, key)
		}
		a.add(base, &o, ts)
		trees = trees[len(ts):]
	}
	return a.total()
}

// Multi-feature forests compare in float32. x is first mapped to cx with
// cx[f] = prev32(ceil32(x[f])), for which x[f] > thr iff cx[f] >= thr for
// every float32 thr (both sides live on the float32 grid). NaN (and -Inf,
// which is never > thr) map to NaN, which is never >= anything: left.

// maxFastDims bounds the features of the lockstep walk: the uint8 feature
// index into the stack buffer of converted features needs no bounds check,
// and 255 (the low byte of a leaf's feature) is no feature, so that the
// index is also the leaf test. Wider forests use pathLen.
const maxFastDims = 255

func prepX(x []float64, cx *[maxFastDims + 1]float32) {
	for f, v := range x {
		cx[uint8(f)] = routeKey(v)
	}
}

// routeKey returns prev32(ceil32(v)), or NaN for NaN and -Inf: see prepX.
func routeKey(v float64) float32 {
	c := float32(v)
	if float64(c) < v {
		c = math.Nextafter32(c, float32(math.Inf(1)))
	}
	if c == float32(math.Inf(-1)) || v != v {
		return float32(math.NaN())
	}
	return math.Nextafter32(c, float32(math.Inf(-1)))
}

func stepN(base unsafe.Pointer, o uintptr, cx *[maxFastDims + 1]float32) uintptr {
	w0 := word(base, o)
	// f is a split's feature (< dims <= maxFastDims), or 255 at a leaf,
	// where it reads cx's last element and the result is not used.
	f := uint8(w0)
	next := splitStep(o, w0, cx[f] >= math.Float32frombits(word(base, o+4)))
	if f == leafMark&0xFF {
		next = o
	}
	return next
}

//go:noinline
func walk8N(base unsafe.Pointer, o *lanes8, steps int, cx *[maxFastDims + 1]float32) {
	o0, o1, o2, o3, o4, o5, o6, o7 := o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]
	for ; steps > 0; steps-- {
		o0 = stepN(base, o0, cx)
		o1 = stepN(base, o1, cx)
		o2 = stepN(base, o2, cx)
		o3 = stepN(base, o3, cx)
		o4 = stepN(base, o4, cx)
		o5 = stepN(base, o5, cx)
		o6 = stepN(base, o6, cx)
		o7 = stepN(base, o7, cx)
	}
	*o = lanes8{o0, o1, o2, o3, o4, o5, o6, o7}
}

// sumPathsN returns sum_t h_t(x)/c(psi_t); x has the forest's dims.
func (f *Forest) sumPathsN(x []float64) float64 {
	if len(x) > maxFastDims {
		return f.sumPathsPlain(x)
	}
	var cx [maxFastDims + 1]float32
	prepX(x, &cx)
	base := unsafe.Pointer(unsafe.SliceData(f.words))
	var o lanes8
	var a acc
	for trees := f.meta; len(trees) > 0; {
		ts := trees[:min(len(trees), 8)]
		steps := o.load(ts, f.padLeaf())
		walk8N(base, &o, steps, &cx)
		a.add(base, &o, ts)
		trees = trees[len(ts):]
	}
	return a.total()
}
