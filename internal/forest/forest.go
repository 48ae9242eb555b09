package forest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"unsafe"

	"github.com/otel-iforest/iforest/internal/heapsize"
	"github.com/otel-iforest/iforest/internal/prefetch"
)

// Forest is an ensemble of isolation trees over dims features.
//
// The forest owns its trees' storage: the nodes (and boxes) of all trees
// sit in one slab, tree after tree, and the tree headers in one array. A
// process that holds thousands of forests scores each point against one
// forest whose trees would otherwise be scattered over as many heap pages as
// there are trees; one slab keeps a score's loads on a few pages (fewer TLB
// and cache misses) and lets a refit replace a tree without allocating.
//
// Score, ScoreAsInserted and Attribution only read the forest and may run
// concurrently with each other; SetTree, Rebuild and Add mutate it (in
// place) and must be synchronised by the owner.
type Forest struct {
	dims  int
	trees []*Tree // trees[i] == &hdr[i]
	hdr   []Tree  // headers; their nodes and boxes are views into the slabs
	nodes []node
	boxes []float32
	// meta repeats what the walks need of each tree (where its nodes start
	// in the slab, its depth and normaliser) in 16 bytes instead of the
	// 72-byte header, so that a score of a forest that is not in cache
	// loads 8 lines of it for 32 trees rather than 36.
	meta []treeMeta
}

type treeMeta struct {
	off   int32 // index of the tree's root in nodes
	depth int32
	invC  float64
}

// New returns a forest over dims features made of copies of trees. It
// panics if dims is out of range or a tree splits on a feature >= dims,
// since scoring would then index past x.
func New(dims int, trees []*Tree) *Forest {
	if dims < 1 || dims > MaxFeatures {
		panic(fmt.Sprintf("forest: dims %d out of range [1, %d]", dims, MaxFeatures))
	}
	f := &Forest{dims: dims}
	nodes, boxes := 0, 0
	for _, t := range trees {
		f.check(t)
		nodes += len(t.nodes)
		boxes += len(t.boxes)
	}
	f.nodes = make([]node, 0, nodes+nodes/8)
	if boxes > 0 {
		f.boxes = make([]float32, 0, boxes+boxes/8)
	}
	f.hdr = make([]Tree, 0, len(trees))
	for _, t := range trees {
		f.hdr = append(f.hdr, *t)
		f.nodes = append(f.nodes, t.nodes...)
		f.boxes = append(f.boxes, t.boxes...)
	}
	f.reslice()
	return f
}

// Options configures Fit.
type Options struct {
	Trees      int    // number of trees; <= 0 means 100 (the paper's default)
	SampleSize int    // psi, rows per tree; <= 0 means 256; capped at rows and MaxSampleSize
	Seed       uint64 // the forest is a deterministic function of (data, options)
}

// pcgStream is the second PCG seed word; tree i uses stream pcgStream ^ mix(i).
const pcgStream = 0x1f0a_7e5d_c0de_2008

// Fit builds a forest on data (row-major, len = rows*dims): each tree gets
// min(SampleSize, rows) rows drawn without replacement.
//
// Tree i is a function of (data, SampleSize, Seed, i) only — it has its own
// PCG stream — so results do not depend on the number of trees built
// before it, and fitting could be parallelised without changing them.
func Fit(data []float32, dims int, opts Options) *Forest {
	if dims < 1 || dims > MaxFeatures {
		panic(fmt.Sprintf("forest: dims %d out of range [1, %d]", dims, MaxFeatures))
	}
	rows := len(data) / dims
	if rows < 1 || rows*dims != len(data) {
		panic(fmt.Sprintf("forest: data length %d is not a positive multiple of dims %d", len(data), dims))
	}
	nTrees := opts.Trees
	if nTrees <= 0 {
		nTrees = 100
	}
	psi := opts.SampleSize
	if psi <= 0 {
		psi = 256
	}
	psi = min(psi, rows, MaxSampleSize)

	b := NewBuilder(dims)
	pcg := rand.NewPCG(0, 0)
	rng := rand.New(pcg)
	s := newSampler(rows, psi)
	sample := make([]float32, psi*dims)
	f := New(dims, nil)
	f.hdr = make([]Tree, 0, nTrees)
	for i := range nTrees {
		pcg.Seed(opts.Seed, pcgStream^mix64(uint64(i)))
		s.draw(rng, data, dims, sample)
		f.Add(b, sample, rng)
	}
	f.compact()
	return f
}

// compact drops the slabs' room for growth (a fitted forest does not change).
func (f *Forest) compact() {
	f.nodes = append(make([]node, 0, len(f.nodes)), f.nodes...)
	if f.boxes != nil {
		f.boxes = append(make([]float32, 0, len(f.boxes)), f.boxes...)
	}
	f.reslice()
}

// mix64 is the splitmix64 finaliser: it spreads consecutive tree indices
// across the PCG state space.
func mix64(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// sampler draws psi of rows without replacement by a partial Fisher–Yates
// shuffle that it then undoes, so every draw starts from the identity
// permutation and depends only on the rng — in O(psi), not O(rows).
type sampler struct {
	perm  []int32
	swaps []int32
	psi   int
}

func newSampler(rows, psi int) *sampler {
	s := &sampler{perm: make([]int32, rows), swaps: make([]int32, psi), psi: psi}
	for i := range s.perm {
		s.perm[i] = int32(i)
	}
	return s
}

// draw copies psi randomly chosen rows of data into dst.
func (s *sampler) draw(rng *rand.Rand, data []float32, dims int, dst []float32) {
	rows := len(s.perm)
	if s.psi == rows {
		// Every row is taken; a tree does not depend on row order.
		copy(dst, data)
		return
	}
	for j := range s.psi {
		k := j + rng.IntN(rows-j)
		s.swaps[j] = int32(k)
		s.perm[j], s.perm[k] = s.perm[k], s.perm[j]
		r := int(s.perm[j])
		copy(dst[j*dims:(j+1)*dims], data[r*dims:(r+1)*dims])
	}
	for j := s.psi - 1; j >= 0; j-- {
		k := s.swaps[j]
		s.perm[j], s.perm[k] = s.perm[k], s.perm[j]
	}
}

// Trees returns the forest's trees (the internal slice; do not modify). The
// trees are views into the forest's storage: they change when the forest
// does (SetTree, Rebuild, Add), so a caller must not keep them past that.
func (f *Forest) Trees() []*Tree { return f.trees }

// Dims returns the number of features.
func (f *Forest) Dims() int { return f.dims }

// SetTree replaces tree i with a copy of t, for rolling refits by the
// forest's owner. It is not safe for concurrent use with scoring; the owner
// must synchronise. It panics if t splits on a feature >= Dims().
func (f *Forest) SetTree(i int, t *Tree) {
	f.check(t)
	f.place(i, t)
}

// Rebuild replaces tree i with one built by b from sample (as b.Build
// would), without allocating once the forest's storage has room.
func (f *Forest) Rebuild(i int, b *Builder, sample []float32, rng *rand.Rand) {
	f.place(i, f.built(b, sample, rng))
}

// Add appends a tree built by b from sample (as b.Build would).
func (f *Forest) Add(b *Builder, sample []float32, rng *rand.Rand) {
	t := f.built(b, sample, rng)
	f.hdr = append(f.hdr, Tree{})
	f.place(len(f.hdr)-1, t)
}

// built builds a tree into b's scratch space and returns a view of it,
// valid until b builds again.
func (f *Forest) built(b *Builder, sample []float32, rng *rand.Rand) *Tree {
	if b.dims != f.dims {
		panic(fmt.Sprintf("forest: builder has %d dims but forest has %d", b.dims, f.dims))
	}
	return b.build(sample, rng)
}

func (f *Forest) check(t *Tree) {
	if t == nil || len(t.nodes) == 0 {
		panic("forest: nil or empty tree")
	}
	if m := t.maxFeature(); m >= f.dims {
		panic(fmt.Sprintf("forest: tree splits on feature %d but forest has %d dims", m, f.dims))
	}
}

// place copies t into slot i of the slabs (moving the trees after it when
// the size changes) and points the headers at their new places.
func (f *Forest) place(i int, t *Tree) {
	if overlaps(f.nodes, t.nodes) {
		t = t.clone() // t is one of ours: copy it out before the slab moves
	}
	at, boxAt := 0, 0
	for k := range f.hdr[:i] {
		at += len(f.hdr[k].nodes)
		boxAt += len(f.hdr[k].boxes)
	}
	f.nodes = splice(f.nodes, at, len(f.hdr[i].nodes), t.nodes)
	f.boxes = splice(f.boxes, boxAt, len(f.hdr[i].boxes), t.boxes)
	f.hdr[i] = *t
	f.reslice()
}

// reslice points every header at its trees' part of the slabs (in order,
// each as long as its current view) and refreshes the pointer slice.
func (f *Forest) reslice() {
	at, boxAt := 0, 0
	if cap(f.trees) < len(f.hdr) {
		f.trees = make([]*Tree, len(f.hdr), cap(f.hdr))
	}
	f.trees = f.trees[:len(f.hdr)]
	if cap(f.meta) < len(f.hdr) {
		f.meta = make([]treeMeta, len(f.hdr), cap(f.hdr))
	}
	f.meta = f.meta[:len(f.hdr)]
	for k := range f.hdr {
		h := &f.hdr[k]
		n := len(h.nodes)
		h.nodes = f.nodes[at : at+n : at+n]
		f.meta[k] = treeMeta{off: int32(at), depth: h.depth, invC: h.invC}
		at += n
		if h.boxes != nil {
			n = len(h.boxes)
			h.boxes = f.boxes[boxAt : boxAt+n : boxAt+n]
			boxAt += n
		}
		f.trees[k] = h
	}
}

// splice replaces s[at:at+old] with repl, growing s (with some room for
// later trees being larger) when needed.
func splice[T any](s []T, at, old int, repl []T) []T {
	n := len(s) - old + len(repl)
	end := len(s)
	if n > cap(s) {
		grown := make([]T, len(s), n+n/8+16)
		copy(grown, s)
		s = grown
	}
	if n > end {
		s = s[:n]
	}
	copy(s[at+len(repl):], s[at+old:end]) // copy is a memmove
	copy(s[at:], repl)
	return s[:n]
}

// overlaps reports whether t's nodes are a view into slab.
func overlaps(slab, t []node) bool {
	if len(t) == 0 || cap(slab) == 0 {
		return false
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(slab)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(t)))
	return p >= start && p < start+uintptr(cap(slab))*unsafe.Sizeof(node{})
}

// MemoryBytes approximates the heap retained by the forest: the slabs, the
// tree headers and summaries, the tree pointer slice and the Forest header,
// each rounded up as the allocator does.
func (f *Forest) MemoryBytes() int {
	return heapsize.Of(int(unsafe.Sizeof(Forest{})), true) + heapsize.Of(8*cap(f.trees), true) +
		heapsize.Of(int(unsafe.Sizeof(Tree{}))*cap(f.hdr), true) +
		heapsize.Of(int(unsafe.Sizeof(treeMeta{}))*cap(f.meta), false) +
		heapsize.Of(int(unsafe.Sizeof(node{}))*cap(f.nodes), false) + heapsize.Of(4*cap(f.boxes), false)
}

// Score returns the anomaly score s(x) = 2^(-mean_t(h_t(x)/c(psi_t))) in
// (0, 1]; higher is more anomalous, ~0.5 is unremarkable. x must have at
// least Dims() elements. A forest without trees scores 0.5. Score does not
// allocate.
func (f *Forest) Score(x []float64) float64 {
	n := len(f.trees)
	if n == 0 {
		return 0.5
	}
	var sum float64
	if f.dims == 1 {
		sum = f.sumPaths1(x[0])
	} else {
		sum = f.sumPathsN(x[:f.dims])
	}
	return math.Exp2(-sum / float64(n))
}

// Attribution writes into out (len >= Dims()) each feature's share in
// isolating x; the shares are >= 0 and sum to 1. No allocation.
//
// Scheme (in the spirit of DIFFI, Carletti et al. 2020, which weights the
// splits on x's path by 1/h_t(x) and by how unbalanced they are): each split
// on x's path in tree t credits its feature with
//
//	(1/h_t(x)) * log2(n_node / n_child)
//
// where n_node is the number of training samples at the split and n_child
// the number that went x's way. The log term is the isolation the split
// achieved for x — about 1 for an ordinary halving, large for a split that
// cuts x off from most of the data — and along a path it sums to
// log2(psi/leaf size), so a tree's credit is a decomposition of how far it
// isolated x. The 1/h_t(x) weight lets trees that isolate x quickly (those
// where x looks anomalous) dominate. Crediting every split equally instead
// spreads much of the credit over the random splits that precede the
// isolating one.
//
// Sample counts of internal nodes are not stored (the 16-byte node has no
// room), so each tree's off-path subtrees are summed on the fly: the cost is
// O(total nodes), tens of microseconds for 100 trees of psi=256. Call it for
// flagged points, not every point. If no split on any path isolates
// anything (e.g. constant training data), every feature gets 1/Dims().
func (f *Forest) Attribution(x []float64, out []float64) {
	out = out[:f.dims]
	x = x[:f.dims]
	clear(out)
	for _, t := range f.trees {
		h := pathLen(t.nodes, x)
		if h <= 0 {
			continue
		}
		w := 1 / h
		nodes := t.nodes
		nv := int(t.psi) // every tree's leaf counts sum to its sample size
		i := 0
		for {
			n := nodes[i]
			if n.feat == leafFeat {
				break
			}
			left := i + int(n.a)
			child := left + b2i(x[n.feat] > float64(n.thr))
			sib := left*2 + 1 - child // the other child
			nc := max(nv-subtreeCount(nodes, sib), 1)
			out[n.feat] += w * math.Log2(float64(nv)/float64(nc))
			nv, i = nc, child
		}
	}
	var total float64
	for _, v := range out {
		total += v
	}
	if !(total > 0) {
		u := 1 / float64(f.dims)
		for i := range out {
			out[i] = u
		}
		return
	}
	inv := 1 / total
	for i := range out {
		out[i] *= inv
	}
}

// subtreeCount returns the number of training samples under node i.
func subtreeCount(nodes []node, i int) int {
	n := nodes[i]
	if n.feat == leafFeat {
		return int(n.a)
	}
	return subtreeCount(nodes, i+int(n.a)) + subtreeCount(nodes, i+int(n.a)+1)
}

// Prefetch starts loading what a score reads of the forest (the tree
// summaries and the node slab) into the caches, without waiting for it
// (see package prefetch). A caller that knows which forest it scores next
// calls it ahead of time. It changes nothing.
func (f *Forest) Prefetch() {
	prefetch.Range(unsafe.Pointer(unsafe.SliceData(f.meta)), uintptr(len(f.meta))*unsafe.Sizeof(treeMeta{}))
	prefetch.Range(unsafe.Pointer(unsafe.SliceData(f.nodes)), uintptr(len(f.nodes))*unsafe.Sizeof(node{}))
}
