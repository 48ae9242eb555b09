package forest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"unsafe"

	"github.com/otel-iforest/iforest/internal/heapsize"
)

// Forest is an ensemble of isolation trees over dims features.
//
// The forest owns its trees' storage: the nodes (and boxes) of all trees
// sit in one slab (in no particular order, see place), and the tree
// headers in one array. A process that holds thousands of forests scores
// each point against one forest whose trees would otherwise be scattered
// over as many heap pages as there are trees; one slab keeps a score's
// loads on a few pages (fewer TLB and cache misses) and lets a refit
// replace a tree without allocating.
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
	// order lists the trees by their place in the slabs (see place); next
	// is where in it the search for room for the next tree starts.
	order []int32
	next  int
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
	f := &Forest{dims: dims, hdr: make([]Tree, 0, len(trees)), order: make([]int32, 0, len(trees))}
	for i, t := range trees {
		f.check(t)
		f.hdr = append(f.hdr, *t) // views of t: pack copies them into the slabs
		f.order = append(f.order, int32(i))
	}
	f.pack(0, false)
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
	f.order = make([]int32, 0, nTrees)
	for i := range nTrees {
		pcg.Seed(opts.Seed, pcgStream^mix64(uint64(i)))
		s.draw(rng, data, dims, sample)
		f.Add(b, sample, rng)
	}
	f.compact()
	return f
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
	if t.boxes != nil && (int(t.dims) != f.dims || len(t.boxes) != 2*f.dims*len(t.nodes)) {
		panic(fmt.Sprintf("forest: tree has boxes over %d features but forest has %d", t.dims, f.dims))
	}
	if m := t.maxFeature(); m >= f.dims {
		panic(fmt.Sprintf("forest: tree splits on feature %d but forest has %d dims", m, f.dims))
	}
}

// Storage.
//
// A tree's place in the slabs has nothing to do with its index: meta[i].off
// says where tree i's nodes start, and its boxes (when kept) start at
// 2*dims times that in the box slab. place puts a new tree into the first
// gap between live trees that holds it, searching from the one after the
// tree placed last, and leaves the nodes of the tree it replaces as
// garbage; only when no gap holds it does pack move the live trees
// together. The detector replaces its trees round-robin, oldest first, so
// the gap after the tree placed last is where the oldest trees were: the
// slab works as a ring, and a replacement copies one tree, where moving
// every tree after it used to copy half the forest (and rewrite every
// header). Scores do not depend on where trees are: every walk sums over
// the trees in index order.

// place copies t into the slabs as tree i (an added tree's header is empty).
func (f *Forest) place(i int, t *Tree) {
	if overlaps(f.nodes, t.nodes) {
		t = t.clone() // t is one of ours: copy it out before the slabs move
	}
	if len(f.hdr[i].nodes) > 0 {
		f.unlist(int32(i))
	}
	n := len(t.nodes)
	k, off := f.fit(n)
	if k < 0 || t.boxes != nil && (off+n)*2*f.dims > cap(f.boxes) {
		f.pack(n, t.boxes != nil)
		k, off = len(f.order), len(f.nodes)
	}
	f.nodes = f.nodes[:max(len(f.nodes), off+n)]
	copy(f.nodes[off:], t.nodes)
	if t.boxes != nil {
		bo := off * 2 * f.dims
		f.boxes = f.boxes[:max(len(f.boxes), bo+len(t.boxes))]
		copy(f.boxes[bo:], t.boxes)
	}
	f.order = slices.Insert(f.order, k, int32(i))
	f.next = k + 1
	f.hdr[i] = *t
	f.index()
	f.view(i, off)
}

// unlist removes tree k from f.order.
func (f *Forest) unlist(k int32) {
	at := slices.Index(f.order, k)
	f.order = slices.Delete(f.order, at, at+1)
	if at < f.next {
		f.next--
	}
}

// fit finds a gap of at least n nodes in the node slab (up to its
// capacity), searching from gap f.next on and wrapping around. Gap g lies
// before the tree f.order[g] (gap len(f.order): after the last tree). It
// returns g and the gap's start, or -1 if no gap is large enough.
func (f *Forest) fit(n int) (g, off int) {
	m := len(f.order)
	for j := 0; j <= m; j++ {
		g := (f.next + j) % (m + 1)
		start, limit := 0, cap(f.nodes)
		if g > 0 {
			prev := f.order[g-1]
			start = int(f.meta[prev].off) + len(f.hdr[prev].nodes)
		}
		if g < m {
			limit = int(f.meta[f.order[g]].off)
		}
		if limit-start >= n {
			return g, start
		}
	}
	return -1, 0
}

// index sizes the pointer slice and the summaries to the headers (after
// Add) and points the pointers at the headers (which Add may have moved).
func (f *Forest) index() {
	if len(f.trees) == len(f.hdr) && (len(f.hdr) == 0 || f.trees[0] == &f.hdr[0]) {
		return
	}
	if cap(f.trees) < len(f.hdr) {
		f.trees = make([]*Tree, len(f.hdr), cap(f.hdr))
	}
	f.trees = f.trees[:len(f.hdr)]
	for k := range f.hdr {
		f.trees[k] = &f.hdr[k]
	}
	if cap(f.meta) < len(f.hdr) {
		f.meta = append(make([]treeMeta, 0, cap(f.hdr)), f.meta...)
	}
	f.meta = f.meta[:len(f.hdr)]
}

// view points tree i's header at its nodes at off (and its boxes at
// 2*dims*off) and refreshes its summary.
func (f *Forest) view(i, off int) {
	h := &f.hdr[i]
	n := len(h.nodes)
	h.nodes = f.nodes[off : off+n : off+n]
	if h.boxes != nil {
		bo, b := off*2*f.dims, len(h.boxes)
		h.boxes = f.boxes[bo : bo+b : bo+b]
	}
	f.meta[i] = treeMeta{off: int32(off), depth: h.depth, invC: h.invC}
	f.trees[i] = h
}

// pack moves the live trees to the slabs' front, in slab order, and makes
// room after them for extra more nodes (and their boxes, if boxes): in
// place when they fit, else in slabs grown by an eighth.
func (f *Forest) pack(extra int, boxes bool) {
	live, liveBoxes := f.live()
	f.repack(live+extra, false, boxes || liveBoxes)
}

// compact drops the slabs' garbage and room for growth (a fitted forest
// does not change).
func (f *Forest) compact() {
	live, boxes := f.live()
	f.repack(live, true, boxes)
}

// live returns how many nodes the trees have and whether any has boxes.
func (f *Forest) live() (nodes int, boxes bool) {
	for _, k := range f.order {
		nodes += len(f.hdr[k].nodes)
		boxes = boxes || f.hdr[k].boxes != nil
	}
	return nodes, boxes
}

// repack lays the live trees out from the slabs' start in slab order, with
// room for need nodes: in the current slabs when they are large enough,
// else in new ones grown by an eighth; exact slabs hold need and no more.
func (f *Forest) repack(need int, exact, boxes bool) {
	nodes, bx := f.nodes, f.boxes
	if exact && cap(nodes) != need {
		nodes = make([]node, 0, need)
	} else if need > cap(nodes) {
		nodes = make([]node, 0, roomFor(need))
	}
	w := 2 * f.dims
	switch {
	case !boxes:
		bx = nil
	case cap(bx) < cap(nodes)*w || exact && cap(bx) != cap(nodes)*w:
		bx = make([]float32, 0, cap(nodes)*w)
	}
	nodes, bx = nodes[:0], bx[:0]
	for _, k := range f.order {
		// In place, sources are at or after their destinations (slab
		// order), so a copy (a memmove) never overwrites a tree not yet moved.
		h := &f.hdr[k]
		at := len(nodes)
		nodes = append(nodes, h.nodes...)
		if h.boxes != nil {
			bx = append(bx[:at*w], h.boxes...)
		}
	}
	f.nodes, f.boxes = nodes, bx
	f.reslice()
}

// roomFor is the capacity of a slab that holds n nodes: an eighth more,
// for the next trees being larger and the gaps that replacements leave.
func roomFor(n int) int { return n + n/8 + 16 }

// reslice points every header at its tree's place in the slabs, which
// follow f.order from the slabs' start (after repack), and refreshes the
// summaries and the pointer slice.
func (f *Forest) reslice() {
	f.index()
	at := 0
	for _, k := range f.order {
		f.view(int(k), at)
		at += len(f.hdr[k].nodes)
	}
	f.next = len(f.order)
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
		heapsize.Of(int(unsafe.Sizeof(treeMeta{}))*cap(f.meta), false) + heapsize.Of(4*cap(f.order), false) +
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
