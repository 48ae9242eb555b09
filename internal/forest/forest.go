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
// The forest owns its trees' storage: the words of all trees sit in one
// slab (in no particular order, see place), described by one 12-byte
// summary per tree. A process that holds thousands of forests scores each
// point against one forest whose trees would otherwise be scattered over
// as many heap pages as there are trees; one slab keeps a score's loads on
// a few pages (fewer TLB and cache misses) and lets a refit replace a tree
// without allocating.
//
// Score, ScoreAsInserted and Attribution only read the forest and may run
// concurrently with each other; SetTree, Rebuild and Add mutate it (in
// place) and must be synchronised by the owner.
type Forest struct {
	dims int
	meta []treeMeta // by tree index
	// words is the slab. Its last padWords words are not a tree's: a leaf
	// that short lane groups park on (see score.go), and room for the
	// walks' reads past a leaf.
	words []uint32
	// order lists the trees by their place in the slab (see place); next
	// is where in it the search for room for the next tree starts.
	order []int32
	next  int
	boxed int // trees with boxes: the walks take each tree as it is
}

// treeMeta is what the walks need of a tree, in 12 bytes: 32 trees' fit in
// six cache lines.
type treeMeta struct {
	off   uint32 // the tree's first word in the slab
	size  uint32 // its words
	psi   uint16 // sample size (MaxSampleSize fits)
	depth uint8
	boxed bool
}

// padWords: see Forest.words.
const padWords = 3

// New returns a forest over dims features made of copies of trees. It
// panics if dims is out of range or a tree splits on a feature >= dims,
// since scoring would then index past x.
func New(dims int, trees []*Tree) *Forest {
	if dims < 1 || dims > MaxFeatures {
		panic(fmt.Sprintf("forest: dims %d out of range [1, %d]", dims, MaxFeatures))
	}
	f := &Forest{dims: dims}
	need := 0
	for _, t := range trees {
		f.check(t)
		need += len(t.words)
	}
	f.meta = make([]treeMeta, 0, len(trees))
	f.order = make([]int32, 0, len(trees))
	f.words = make([]uint32, 0, need+padWords)
	for i, t := range trees {
		f.meta = append(f.meta, f.summary(uint32(len(f.words)), t))
		f.order = append(f.order, int32(i))
		f.words = append(f.words, t.words...)
		if t.boxDims != 0 {
			f.boxed++
		}
	}
	f.pad()
	f.next = len(f.order)
	return f
}

func (f *Forest) summary(off uint32, t *Tree) treeMeta {
	return treeMeta{off: off, size: uint32(len(t.words)), psi: uint16(t.psi), depth: uint8(t.depth), boxed: t.boxDims != 0}
}

// pad appends the pad words to a slab that holds trees up to its length.
func (f *Forest) pad() {
	if len(f.meta) == 0 {
		f.words = f.words[:0]
		return
	}
	f.words = append(f.words, leafWord(0, 0), 0, 0)
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
	f.meta = make([]treeMeta, 0, nTrees)
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

// Len returns the number of trees.
func (f *Forest) Len() int { return len(f.meta) }

// Tree returns tree i, a view into the forest's storage: it changes when
// the forest does (SetTree, Rebuild, Add), so a caller must not keep it
// past that.
func (f *Forest) Tree(i int) *Tree {
	t := f.view(i)
	return &t
}

// view is Tree without an allocation.
func (f *Forest) view(i int) Tree {
	m := f.meta[i]
	t := Tree{words: f.words[m.off : m.off+m.size : m.off+m.size], invC: invCTable[m.psi], psi: int32(m.psi), depth: int32(m.depth)}
	if m.boxed {
		t.boxDims = int32(f.dims)
	}
	return t
}

// Trees returns views of the forest's trees (see Tree), in a new slice.
func (f *Forest) Trees() []*Tree {
	out := make([]*Tree, len(f.meta))
	for i := range out {
		out[i] = f.Tree(i)
	}
	return out
}

// AppendTree appends the binary form of tree i to b (see Tree.AppendBinary)
// without allocating a view.
func (f *Forest) AppendTree(b []byte, i int) []byte {
	t := f.view(i)
	b, _ = t.AppendBinary(b)
	return b
}

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
	f.meta = append(f.meta, treeMeta{})
	f.place(len(f.meta)-1, t)
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
	if t == nil || len(t.words) == 0 {
		panic("forest: nil or empty tree")
	}
	if t.boxDims != 0 && int(t.boxDims) != f.dims {
		panic(fmt.Sprintf("forest: tree has boxes over %d features but forest has %d", t.boxDims, f.dims))
	}
	if m := t.maxFeature(); m >= f.dims {
		panic(fmt.Sprintf("forest: tree splits on feature %d but forest has %d dims", m, f.dims))
	}
}

// Storage.
//
// A tree's place in the slab has nothing to do with its index: meta[i].off
// says where tree i's words start. place puts a new tree into the first gap
// between live trees that holds it, searching from the one after the tree
// placed last, and leaves the words of the tree it replaces as garbage;
// only when no gap holds it does pack move the live trees together. The
// detector replaces its trees round-robin, oldest first, so the gap after
// the tree placed last is where the oldest trees were: the slab works as a
// ring, and a replacement copies one tree, where moving every tree after it
// used to copy half the forest. Scores do not depend on where trees are:
// every walk sums over the trees in index order.

// limit is the end of the slab's room for trees.
func (f *Forest) limit() int { return max(len(f.words)-padWords, 0) }

// place copies t into the slab as tree i (an added tree's summary is empty).
func (f *Forest) place(i int, t *Tree) {
	if overlaps(f.words, t.words) {
		t = t.clone() // t is one of ours: copy it out before the slab moves
	}
	if f.meta[i].size > 0 {
		f.unlist(int32(i))
		if f.meta[i].boxed {
			f.boxed--
		}
	}
	n := len(t.words)
	k, off := f.fit(n)
	if k < 0 {
		f.pack(n)
		k, off = len(f.order), f.end()
	}
	copy(f.words[off:], t.words)
	f.order = slices.Insert(f.order, k, int32(i))
	f.next = k + 1
	f.meta[i] = f.summary(uint32(off), t)
	if t.boxDims != 0 {
		f.boxed++
	}
}

// end is where the last tree in the slab ends.
func (f *Forest) end() int {
	if len(f.order) == 0 {
		return 0
	}
	m := f.meta[f.order[len(f.order)-1]]
	return int(m.off + m.size)
}

// unlist removes tree k from f.order.
func (f *Forest) unlist(k int32) {
	at := slices.Index(f.order, k)
	f.order = slices.Delete(f.order, at, at+1)
	if at < f.next {
		f.next--
	}
}

// fit finds a gap of at least n words in the slab, searching from gap
// f.next on and wrapping around. Gap g lies before the tree f.order[g]
// (gap len(f.order): after the last tree). It returns g and the gap's
// start, or -1 if no gap is large enough.
func (f *Forest) fit(n int) (g, off int) {
	m := len(f.order)
	for j := 0; j <= m; j++ {
		g := (f.next + j) % (m + 1)
		start, limit := 0, f.limit()
		if g > 0 {
			prev := f.meta[f.order[g-1]]
			start = int(prev.off + prev.size)
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

// pack moves the live trees to the slab's front, in slab order, and makes
// room after them for extra more words: in place when they fit, else in a
// slab grown by an eighth.
func (f *Forest) pack(extra int) {
	f.repack(f.live()+extra, false)
}

// compact drops the slab's garbage and room for growth (a fitted forest
// does not change).
func (f *Forest) compact() {
	f.repack(f.live(), true)
}

// live returns how many words the trees in the slab have.
func (f *Forest) live() int {
	n := 0
	for _, k := range f.order {
		n += int(f.meta[k].size)
	}
	return n
}

// repack lays the live trees out from the slab's start in slab order, with
// room for need words: in the current slab when it is large enough, else
// in a new one grown by an eighth; an exact slab holds need and no more.
func (f *Forest) repack(need int, exact bool) {
	words := f.words
	switch {
	case exact && f.limit() != need:
		words = make([]uint32, need+padWords)
	case need > f.limit():
		words = make([]uint32, roomFor(need)+padWords)
	}
	at := 0
	for _, k := range f.order {
		// In place, sources are at or after their destinations (slab
		// order), so a copy (a memmove) never overwrites a tree not yet moved.
		m := &f.meta[k]
		copy(words[at:], f.words[m.off:m.off+m.size])
		m.off = uint32(at)
		at += int(m.size)
	}
	f.words = words
	f.words[len(f.words)-padWords] = leafWord(0, 0)
	f.next = len(f.order)
}

// roomFor is the room of a slab that holds n words: about 3% more, for
// the next trees being larger and the gaps that replacements leave, and
// whatever else the allocator's size class for that holds (it would be
// set aside anyway). When a replacement finds no gap, the trees are moved
// together (a copy of a few KB, rare: see TestRoundRobinRebuildsRarelyMove).
func roomFor(n int) int {
	return heapsize.Of(4*(n+n/32+16+padWords), false)/4 - padWords
}

// overlaps reports whether t's words are a view into slab.
func overlaps(slab, t []uint32) bool {
	if len(t) == 0 || cap(slab) == 0 {
		return false
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(slab)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(t)))
	return p >= start && p < start+uintptr(cap(slab))*4
}

// MemoryBytes approximates the heap retained by the forest: the slab, the
// tree summaries and order and the Forest header, each rounded up as the
// allocator does.
func (f *Forest) MemoryBytes() int {
	return heapsize.Of(int(unsafe.Sizeof(Forest{})), true) +
		heapsize.Of(int(unsafe.Sizeof(treeMeta{}))*cap(f.meta), false) + heapsize.Of(4*cap(f.order), false) +
		heapsize.Of(4*cap(f.words), false)
}

// Score returns the anomaly score s(x) = 2^(-mean_t(h_t(x)/c(psi_t))) in
// (0, 1]; higher is more anomalous, ~0.5 is unremarkable. x must have at
// least Dims() elements. A forest without trees scores 0.5. Score does not
// allocate.
func (f *Forest) Score(x []float64) float64 {
	n := len(f.meta)
	if n == 0 {
		return 0.5
	}
	var sum float64
	switch {
	case f.boxed > 0:
		sum = f.sumPathsPlain(x[:f.dims])
	case f.dims == 1:
		sum = f.sumPaths1(x[0])
	default:
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
// Sample counts of splits are not stored, so each tree's off-path subtrees
// are summed on the fly: the cost is O(total nodes), tens of microseconds
// for 100 trees of psi=256. Call it for flagged points, not every point. If
// no split on any path isolates anything (e.g. constant training data),
// every feature gets 1/Dims().
func (f *Forest) Attribution(x []float64, out []float64) {
	out = out[:f.dims]
	x = x[:f.dims]
	clear(out)
	for i := range f.meta {
		t := f.view(i)
		stride := t.stride()
		h := pathLen(t.words, stride, x)
		if h <= 0 {
			continue
		}
		w := 1 / h
		words := t.words
		nv := int(t.psi) // every tree's leaf counts sum to its sample size
		o := 0
		for {
			w0 := words[o]
			if isLeaf(w0) {
				break
			}
			feat := splitFeat(w0)
			left, right := o+stride, o+stride+leftWords(w0)
			child, sib := left, right
			if x[feat] > float64(math.Float32frombits(words[o+1])) {
				child, sib = right, left
			}
			nc := max(nv-subtreeCount(words, stride, sib), 1)
			out[feat] += w * math.Log2(float64(nv)/float64(nc))
			nv, o = nc, child
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

// subtreeCount returns the number of training samples under the node at o
// (not a root).
func subtreeCount(words []uint32, stride, o int) int {
	w0 := words[o]
	if isLeaf(w0) {
		return leafSamples(w0)
	}
	return subtreeCount(words, stride, o+stride) + subtreeCount(words, stride, o+stride+leftWords(w0))
}
