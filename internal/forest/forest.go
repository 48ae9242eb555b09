package forest

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Forest is an ensemble of isolation trees over dims features.
//
// Score and Attribution only read the forest and may run concurrently with
// each other; SetTree mutates it and must be synchronised by the owner.
type Forest struct {
	dims  int
	trees []*Tree
}

// New returns a forest over dims features made of trees (the slice is
// copied). It panics if dims is out of range or a tree splits on a feature
// >= dims, since scoring would then index past x.
func New(dims int, trees []*Tree) *Forest {
	if dims < 1 || dims > MaxFeatures {
		panic(fmt.Sprintf("forest: dims %d out of range [1, %d]", dims, MaxFeatures))
	}
	f := &Forest{dims: dims, trees: make([]*Tree, len(trees))}
	for i, t := range trees {
		f.SetTree(i, t)
	}
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
	trees := make([]*Tree, nTrees)
	for i := range trees {
		pcg.Seed(opts.Seed, pcgStream^mix64(uint64(i)))
		s.draw(rng, data, dims, sample)
		trees[i] = b.Build(sample, rng)
	}
	return &Forest{dims: dims, trees: trees}
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

// Trees returns the forest's trees (the internal slice; do not modify).
func (f *Forest) Trees() []*Tree { return f.trees }

// Dims returns the number of features.
func (f *Forest) Dims() int { return f.dims }

// SetTree replaces tree i, for rolling refits by the forest's owner. It is
// not safe for concurrent use with Score or Attribution; the owner must
// synchronise. It panics if t splits on a feature >= Dims().
func (f *Forest) SetTree(i int, t *Tree) {
	if t == nil {
		panic("forest: nil tree")
	}
	if m := t.maxFeature(); m >= f.dims {
		panic(fmt.Sprintf("forest: tree splits on feature %d but forest has %d dims", m, f.dims))
	}
	f.trees[i] = t
}

// MemoryBytes approximates the bytes retained by the forest: node slices,
// tree headers, the tree pointer slice and the Forest header.
func (f *Forest) MemoryBytes() int {
	n := 32 + 8*cap(f.trees) // Forest{dims, []*Tree} + pointer array
	for _, t := range f.trees {
		if t != nil {
			n += t.MemoryBytes()
		}
	}
	return n
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
		sum = sumPaths1(f.trees, x[0])
	} else {
		sum = sumPathsN(f.trees, x[:f.dims])
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
// Sample counts of internal nodes are not stored (the 8-byte node has no
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
			child := int(n.a) + b2i(x[n.feat] > float64(n.thr))
			sib := int(n.a)*2 + 1 - child // the other child
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
	return subtreeCount(nodes, int(n.a)) + subtreeCount(nodes, int(n.a)+1)
}
