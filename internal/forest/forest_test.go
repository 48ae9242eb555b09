package forest

import (
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otel-iforest/iforest/internal/heapsize"
)

func TestAvgPathLength(t *testing.T) {
	assert.Equal(t, 0.0, AvgPathLength(0))
	assert.Equal(t, 0.0, AvgPathLength(1))
	assert.Equal(t, 1.0, AvgPathLength(2))
	// c(n) = 2 H(n-1) - 2(n-1)/n with H(i) ~ ln(i) + gamma (Liu et al. 2008).
	for _, n := range []int{3, 4, 10, 64, 256, 1000, MaxSampleSize} {
		want := 2*(math.Log(float64(n-1))+0.5772156649015329) - 2*float64(n-1)/float64(n)
		assert.InDelta(t, want, AvgPathLength(n), 1e-12, "n=%d", n)
		assert.Equal(t, AvgPathLength(n), cTable[n], "table n=%d", n)
	}
	// c(256), the normaliser of psi=256 forests, as Python evaluates the formula.
	assert.InDelta(t, 10.244770920119917, AvgPathLength(256), 1e-12)
	assert.InDelta(t, 10.2447, AvgPathLength(256), 1e-4)
}

func TestFloorFloat32(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		v := r.NormFloat64() * math.Pow(10, float64(r.IntN(20)-10))
		f := floorFloat32(v)
		require.LessOrEqual(t, float64(f), v)
		require.Greater(t, float64(math.Nextafter32(f, float32(math.Inf(1)))), v)
	}
	z := floorFloat32(math.Copysign(0, -1))
	assert.Equal(t, uint32(0), math.Float32bits(z), "-0 must become +0")
	assert.Equal(t, float32(math.MaxFloat32), floorFloat32(1e300))
	assert.True(t, math.IsInf(float64(floorFloat32(-1e300)), -1))
}

func TestDeterminism(t *testing.T) {
	data := gaussData(2000, 3, 11)
	a := Fit(data, 3, Options{Trees: 50, SampleSize: 128, Seed: 7})
	b := Fit(data, 3, Options{Trees: 50, SampleSize: 128, Seed: 7})
	c := Fit(data, 3, Options{Trees: 50, SampleSize: 128, Seed: 8})
	pts := gaussData(500, 3, 12)
	x := make([]float64, 3)
	differ := 0
	for i := range 500 {
		for j := range x {
			x[j] = float64(pts[i*3+j]) * 1.5
		}
		require.Equal(t, a.Score(x), b.Score(x))
		if a.Score(x) != c.Score(x) {
			differ++
		}
	}
	assert.Greater(t, differ, 400, "a different seed should change almost every score")
	for i := range a.Len() {
		require.Equal(t, a.Tree(i).words, b.Tree(i).words)
		assert.NotEqual(t, a.Tree(i).words, c.Tree(i).words)
	}
	// Tree i depends only on (seed, i): a prefix of a larger forest is the
	// smaller forest.
	d := Fit(data, 3, Options{Trees: 20, SampleSize: 128, Seed: 7})
	for i := range d.Len() {
		require.Equal(t, a.Tree(i).words, d.Tree(i).words)
	}
}

// checkShape verifies the words are a proper tree: every word belongs to
// exactly one node reached from the root, links in range, leaf depths
// equal to their real depth, depth within limit, splits' thresholds within
// their ranges. It returns the leaves' total sample count.
func checkShape(t *testing.T, tr *Tree, limit int) int {
	t.Helper()
	covered := make([]bool, len(tr.words))
	total := 0
	stride := tr.stride()
	for _, n := range nodesOf(tr) {
		size := stride
		switch {
		case n.leaf && n.o != 0:
			size = 1
		}
		require.LessOrEqual(t, n.o+size, len(tr.words))
		for k := n.o; k < n.o+size; k++ {
			require.False(t, covered[k], "word %d in two nodes", k)
			covered[k] = true
		}
		if n.leaf {
			require.Equal(t, n.depth, leafDepth(tr.words[n.o]), "leaf depth")
			require.LessOrEqual(t, n.depth, limit)
			require.Greater(t, n.samples, 0, "empty leaf")
			total += n.samples
			continue
		}
		require.Less(t, n.right, len(tr.words))
		require.Greater(t, n.right, n.left, "right subtree after the left")
		require.False(t, math.IsNaN(float64(n.thr)))
		require.NotEqual(t, uint32(1<<31), math.Float32bits(n.thr), "threshold -0")
		require.True(t, n.lo <= n.thr && n.thr < n.hi, "threshold %v outside its range [%v, %v]", n.thr, n.lo, n.hi)
	}
	for i, c := range covered {
		require.True(t, c, "word %d in no node", i)
	}
	require.Equal(t, len(tr.words), cap(tr.words), "words not exactly sized")
	return total
}

func TestBuildInvariants(t *testing.T) {
	for _, c := range []struct{ rows, dims int }{{1, 1}, {2, 1}, {3, 2}, {64, 3}, {256, 1}, {256, 4}, {1000, 2}, {300, 300}, {MaxSampleSize, 1}} {
		sample := gaussData(c.rows, c.dims, uint64(c.rows*1000+c.dims))
		// Heavy ties: quantise one feature so nodes become constant on it.
		if c.dims > 1 {
			for r := range c.rows {
				sample[r*c.dims+1] = float32(math.Round(float64(sample[r*c.dims+1])))
			}
		}
		b := NewBuilder(c.dims)
		tr := b.Build(sample, rand.New(rand.NewPCG(3, 4)))
		limit := int(math.Ceil(math.Log2(float64(c.rows))))
		require.Equal(t, c.rows, checkShape(t, tr, limit), "rows=%d dims=%d", c.rows, c.dims)
		require.Equal(t, c.rows, tr.SampleSize())
		require.LessOrEqual(t, tr.Depth(), limit)

		// Routing the training rows reproduces the leaf counts, i.e. every
		// split sends at least its minimum left and its maximum right.
		counts := make(map[int]int)
		x := make([]float64, c.dims)
		for r := range c.rows {
			for j := range x {
				x[j] = float64(sample[r*c.dims+j])
			}
			counts[route(tr, x)]++
		}
		for _, n := range nodesOf(tr) {
			if n.leaf {
				require.Equal(t, n.samples, counts[n.o], "leaf %d count", n.o)
			}
		}
	}
}

func TestFitInvariants(t *testing.T) {
	data := gaussData(5000, 2, 5)
	f := Fit(data, 2, Options{Trees: 30, SampleSize: 256, Seed: 1})
	require.Len(t, f.Trees(), 30)
	for _, tr := range f.Trees() {
		assert.Equal(t, 256, checkShape(t, tr, 8))
		assert.Equal(t, 256, tr.SampleSize())
	}
	// SampleSize is capped at the number of rows.
	small := Fit(data[:2*100], 2, Options{Trees: 5, SampleSize: 256, Seed: 1})
	for _, tr := range small.Trees() {
		assert.Equal(t, 100, checkShape(t, tr, 7))
	}
	// Defaults.
	def := Fit(data, 2, Options{Seed: 1})
	assert.Len(t, def.Trees(), 100)
	assert.Equal(t, 256, def.Trees()[0].SampleSize())
}

func TestSamplerWithoutReplacement(t *testing.T) {
	const rows, dims, psi = 1000, 1, 200
	data := make([]float32, rows)
	for i := range data {
		data[i] = float32(i)
	}
	s := newSampler(rows, psi)
	rng := rand.New(rand.NewPCG(1, 1))
	dst := make([]float32, psi)
	hits := make([]int, rows)
	for range 500 {
		s.draw(rng, data, dims, dst)
		seen := map[float32]bool{}
		for _, v := range dst {
			require.False(t, seen[v], "row drawn twice")
			seen[v] = true
			hits[int(v)]++
		}
		for i, p := range s.perm {
			require.Equal(t, int32(i), p, "permutation not restored")
		}
	}
	// Every row has probability psi/rows = 0.2 per draw: 100 expected hits.
	assert.Greater(t, slices.Min(hits), 50)
	assert.Less(t, slices.Max(hits), 160)
}

func TestSeparation(t *testing.T) {
	const n, dims = 2000, 2
	data := gaussData(n, dims, 21)
	data = append(data, 8, 8) // planted outlier
	f := Fit(data, dims, Options{Trees: 100, SampleSize: 256, Seed: 3})

	out := f.Score([]float64{8, 8})
	assert.Greater(t, out, 0.7)

	scores := make([]float64, n)
	for i := range n {
		scores[i] = f.Score([]float64{float64(data[2*i]), float64(data[2*i+1])})
		require.True(t, scores[i] > 0 && scores[i] <= 1)
	}
	slices.Sort(scores)
	assert.Less(t, scores[n/2], 0.5, "median blob score")
	assert.Less(t, scores[n*3/4], 0.55, "75th percentile blob score")
	assert.Greater(t, out, scores[n*99/100], "the outlier outscores 99% of the blob")
	center := f.Score([]float64{0, 0})
	assert.Less(t, center, 0.5)
}

func TestConstantData(t *testing.T) {
	data := make([]float32, 3*500)
	for i := range data {
		data[i] = 4.25
	}
	f := Fit(data, 3, Options{Trees: 10, SampleSize: 64, Seed: 1})
	for _, tr := range f.Trees() {
		require.Equal(t, 1, tr.NumNodes(), "constant data gives a single leaf")
		assert.Equal(t, 64, checkShape(t, tr, 6))
	}
	// h = 0 + c(64) for every point, so s = 2^-1.
	for _, x := range [][]float64{{4.25, 4.25, 4.25}, {100, -3, 0}, {math.NaN(), 0, 0}} {
		assert.InDelta(t, 0.5, f.Score(x), 1e-15)
	}
	attr := make([]float64, 3)
	f.Attribution([]float64{100, -3, 0}, attr)
	assert.InDeltaSlice(t, []float64{1.0 / 3, 1.0 / 3, 1.0 / 3}, attr, 1e-15)

	// One varying feature among constant ones: every split uses it.
	for r := range 500 {
		data[r*3+1] = float32(r)
	}
	f = Fit(data, 3, Options{Trees: 10, SampleSize: 64, Seed: 1})
	for _, tr := range f.Trees() {
		for _, n := range nodesOf(tr) {
			if !n.leaf {
				require.Equal(t, 1, n.feat)
			}
		}
		assert.Equal(t, 64, checkShape(t, tr, 6))
	}

	// A single row: one leaf of size 1; h = 0 and the score is 1.
	one := Fit([]float32{1, 2}, 2, Options{Trees: 3, Seed: 1})
	assert.Equal(t, 1.0, one.Score([]float64{1, 2}))
}

func TestNaNTraining(t *testing.T) {
	data := gaussData(300, 2, 9)
	for i := 0; i < len(data); i += 7 {
		data[i] = float32(math.NaN())
	}
	b := NewBuilder(2)
	tr := b.Build(data[:2*256], rand.New(rand.NewPCG(1, 1)))
	assert.Equal(t, 256, checkShape(t, tr, 8))
}

// refScore is the definition, via the plain per-tree walk.
func refScore(f *Forest, x []float64) float64 {
	var s float64
	for _, tr := range f.Trees() {
		s += tr.PathLength(x) / AvgPathLength(tr.SampleSize())
	}
	return math.Exp2(-s / float64(len(f.Trees())))
}

// edgeValues returns values on, just above and just below every threshold
// of feature f, plus special values.
func edgeValues(f *Forest, feat int) []float64 {
	vals := []float64{0, math.Copysign(0, -1), math.Inf(1), math.Inf(-1), math.NaN(),
		math.MaxFloat32, -math.MaxFloat32, 1e300, -1e300, 1e-45, -1e-45}
	for _, tr := range f.Trees() {
		for _, n := range nodesOf(tr) {
			if !n.leaf && n.feat == feat {
				v := float64(n.thr)
				vals = append(vals, v, math.Nextafter(v, math.Inf(1)), math.Nextafter(v, math.Inf(-1)),
					float64(math.Nextafter32(n.thr, float32(math.Inf(1)))), float64(math.Nextafter32(n.thr, float32(math.Inf(-1)))))
			}
		}
	}
	return vals
}

func TestScoreMatchesDefinition(t *testing.T) {
	for _, c := range []struct{ dims, trees, psi int }{{1, 100, 256}, {1, 13, 64}, {1, 1, 16}, {3, 100, 256}, {4, 13, 64}, {256, 9, 64}, {300, 10, 64}} {
		data := gaussData(1000, c.dims, uint64(c.dims*7+c.trees))
		// Mixed signs and magnitudes exercise both integer comparisons.
		for i := range data {
			if i%5 == 0 {
				data[i] *= 1000
			}
		}
		f := Fit(data, c.dims, Options{Trees: c.trees, SampleSize: c.psi, Seed: 99})
		x := make([]float64, c.dims)
		r := rand.New(rand.NewPCG(5, 5))
		check := func() {
			t.Helper()
			got, want := f.Score(x), refScore(f, x)
			if math.IsNaN(want) {
				require.True(t, math.IsNaN(got))
				return
			}
			require.InDelta(t, want, got, 1e-13, "dims=%d x=%v", c.dims, x[:min(len(x), 4)])
		}
		for range 2000 {
			for j := range x {
				x[j] = r.NormFloat64() * 2
				if r.IntN(4) == 0 {
					x[j] *= 1000
				}
			}
			check()
		}
		for feat := range min(c.dims, 4) {
			for j := range x {
				x[j] = r.NormFloat64()
			}
			for _, v := range edgeValues(f, feat) {
				x[feat] = v
				check()
			}
		}
	}
}

func TestMixedSampleSizes(t *testing.T) {
	data := gaussData(3000, 2, 1)
	f := Fit(data, 2, Options{Trees: 10, SampleSize: 256, Seed: 1})
	// Replace some trees with ones built on smaller samples, as a rolling
	// refit on a short history would.
	b := NewBuilder(2)
	rng := rand.New(rand.NewPCG(9, 9))
	f.SetTree(3, b.Build(data[:2*32], rng))
	f.SetTree(7, b.Build(data[2*100:2*117], rng))
	require.Equal(t, 32, f.Trees()[3].SampleSize())
	require.Equal(t, 17, f.Trees()[7].SampleSize())
	x := []float64{0.3, -2}
	var s float64
	for _, tr := range f.Trees() {
		s += tr.PathLength(x) / AvgPathLength(tr.SampleSize())
	}
	assert.InDelta(t, math.Exp2(-s/10), f.Score(x), 1e-15)

	assert.Panics(t, func() { f.SetTree(0, NewBuilder(3).Build([]float32{0, 0, 0, 0, 0, 1}, rng)) },
		"a tree over more features than the forest has")
	assert.Panics(t, func() { f.SetTree(0, nil) })
}

func TestZeroAllocs(t *testing.T) {
	for _, dims := range []int{1, 4, 300} {
		f := Fit(gaussData(1000, dims, 1), dims, Options{Trees: 50, SampleSize: 128, Seed: 1})
		x := make([]float64, dims)
		for i := range x {
			x[i] = 0.5
		}
		out := make([]float64, dims)
		var sink float64
		tr := f.Tree(0)
		assert.Zero(t, testing.AllocsPerRun(100, func() { sink += f.Score(x) }), "Score dims=%d", dims)
		assert.Zero(t, testing.AllocsPerRun(100, func() { f.Attribution(x, out) }), "Attribution dims=%d", dims)
		assert.Zero(t, testing.AllocsPerRun(100, func() { sink += tr.PathLength(x) }), "PathLength dims=%d", dims)
		_ = sink
	}
}

func TestBuilderAllocs(t *testing.T) {
	sample := gaussData(256, 3, 1)
	b := NewBuilder(3)
	rng := rand.New(rand.NewPCG(1, 1))
	b.Build(sample, rng) // warm up the scratch space
	// The Tree header and its exact-size words.
	assert.LessOrEqual(t, testing.AllocsPerRun(50, func() { b.Build(sample, rng) }), 2.0)
}

func TestAttribution(t *testing.T) {
	const n, dims = 2000, 4
	data := gaussData(n, dims, 31)
	f := Fit(data, dims, Options{Trees: 100, SampleSize: 256, Seed: 5})
	out := make([]float64, dims)

	x := []float64{0.1, -0.2, 6, 0.3} // anomalous only in feature 2
	f.Attribution(x, out)
	var sum float64
	for _, v := range out {
		require.GreaterOrEqual(t, v, 0.0)
		sum += v
	}
	assert.InDelta(t, 1, sum, 1e-12)
	assert.Equal(t, 2, argmax(out), "shares %v", out)
	assert.Greater(t, out[2], 0.5, "shares %v", out)

	x = []float64{-7, 0, 0, 0}
	f.Attribution(x, out)
	assert.Equal(t, 0, argmax(out), "shares %v", out)

	// Anomalous in two features: those two lead.
	x = []float64{0, 5, 0, -5}
	f.Attribution(x, out)
	assert.Greater(t, out[1]+out[3], 0.7, "shares %v", out)
}

// TestAttributionDefinition recomputes the attribution from the training
// samples themselves: n_node and n_child by routing every sample row.
func TestAttributionDefinition(t *testing.T) {
	const dims, psi = 3, 100
	b := NewBuilder(dims)
	rng := rand.New(rand.NewPCG(4, 4))
	var trees []*Tree
	var samples [][]float32
	for i := range 12 {
		s := gaussData(psi, dims, uint64(50+i))
		samples = append(samples, s)
		trees = append(trees, b.Build(s, rng))
	}
	f := New(dims, trees)
	x := []float64{0.3, 2.5, -1}
	want := make([]float64, dims)
	row := make([]float64, dims)
	for ti, tr := range trees {
		w := 1 / tr.PathLength(x)
		for n := nodeAt(tr, 0); !n.leaf; {
			xRight := x[n.feat] > float64(n.thr)
			var nv, nc int
			for r := range psi {
				for j := range row {
					row[j] = float64(samples[ti][r*dims+j])
				}
				if passes(tr, row, n.o) {
					nv++
					if (row[n.feat] > float64(n.thr)) == xRight {
						nc++
					}
				}
			}
			want[n.feat] += w * math.Log2(float64(nv)/float64(nc))
			if xRight {
				n = nodeAt(tr, n.right)
			} else {
				n = nodeAt(tr, n.left)
			}
		}
	}
	var total float64
	for _, v := range want {
		total += v
	}
	for j := range want {
		want[j] /= total
	}
	got := make([]float64, dims)
	f.Attribution(x, got)
	assert.InDeltaSlice(t, want, got, 1e-12)
}

// passes reports whether x's path in tr goes through the node at target.
func passes(tr *Tree, x []float64, target int) bool {
	for n := nodeAt(tr, 0); ; {
		if n.o == target {
			return true
		}
		if n.leaf {
			return false
		}
		if x[n.feat] > float64(n.thr) {
			n = nodeAt(tr, n.right)
		} else {
			n = nodeAt(tr, n.left)
		}
	}
}

func argmax(v []float64) int {
	best := 0
	for i := range v {
		if v[i] > v[best] {
			best = i
		}
	}
	return best
}

func TestMemoryBytes(t *testing.T) {
	f := Fit(gaussData(4096, 1, 1), 1, Options{Trees: 100, SampleSize: 256, Seed: 1})
	words := 0
	for _, tr := range f.Trees() {
		n := nodesOf(tr)
		leaves := 0
		for _, nd := range n {
			leaves += b2i(nd.leaf)
		}
		// 12 bytes a split, 4 a leaf.
		require.Equal(t, 12*(len(n)-leaves)+4*leaves, 4*len(tr.words))
		words += len(tr.words)
		assert.Equal(t, heapsize.Of(4*len(tr.words), false)+heapsize.Of(int(unsafe.Sizeof(Tree{})), true), tr.MemoryBytes())
	}
	// A fitted forest's slab is exactly sized (with its pad words); a
	// 12-byte summary and a slab-order index per tree.
	assert.Equal(t, 12, int(unsafe.Sizeof(treeMeta{})))
	assert.Equal(t, heapsize.Of(4*(words+padWords), false)+heapsize.Of(100*12, false)+heapsize.Of(100*4, false)+
		heapsize.Of(int(unsafe.Sizeof(Forest{})), true), f.MemoryBytes())

	// And it is what the heap holds: many forests of the detector's kind,
	// built by rolling rebuilds as the detector does.
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	b := NewBuilder(2)
	rng := rand.New(rand.NewPCG(1, 1))
	sample := gaussData(32, 2, 1)
	fs := make([]*Forest, 500)
	before := heap()
	estimate := 0
	for i := range fs {
		fs[i] = New(2, nil)
		for range 32 {
			fs[i].Add(b, sample, rng)
		}
		for k := range 64 {
			fs[i].Rebuild(k%32, b, gaussData(32, 2, uint64(k)), rng)
		}
	}
	held := heap() - before
	for _, f := range fs {
		estimate += f.MemoryBytes()
	}
	runtime.KeepAlive(fs)
	assert.InDelta(t, float64(estimate), float64(held), 0.02*float64(estimate))
}

func TestNewValidates(t *testing.T) {
	f := Fit(gaussData(100, 3, 1), 3, Options{Trees: 2, SampleSize: 32, Seed: 1})
	assert.Panics(t, func() { New(2, f.Trees()) })
	assert.Panics(t, func() { New(0, nil) })
	g := New(3, f.Trees())
	assert.Equal(t, 3, g.Dims())
	x := []float64{0, 0, 0}
	assert.Equal(t, f.Score(x), g.Score(x))
	assert.Equal(t, 0.5, New(1, nil).Score([]float64{0}))
	assert.Panics(t, func() { Fit(make([]float32, 5), 2, Options{}) })
	assert.Panics(t, func() { NewBuilder(1).Build(nil, nil) })
	assert.Panics(t, func() { NewBuilder(1).Build(make([]float32, MaxSampleSize+1), nil) })
}

// TestKernelsMatchPlainWalk checks the lockstep kernels (both comparison
// domains of the one-feature walk, and the float32 walk) against one plain
// walk per tree, at random points and at and next to every threshold.
func TestKernelsMatchPlainWalk(t *testing.T) {
	for _, dims := range []int{1, 5} {
		f := Fit(gaussData(1000, dims, 3), dims, Options{Trees: 21, SampleSize: 128, Seed: 3})
		// Two one-node trees (constant samples) among the others: their
		// leaves keep a range instead of a stored path length.
		constant := make([]float32, 16*dims)
		single := NewBuilder(dims).Build(constant, rand.New(rand.NewPCG(1, 1)))
		require.Equal(t, 1, single.NumNodes())
		trees := append([]*Tree{single}, f.Trees()...)
		f = New(dims, append(trees, single))
		check := func(x []float64) {
			t.Helper()
			want := math.Exp2(-f.sumPathsPlain(x) / float64(f.Len()))
			require.InDelta(t, want, f.Score(x), 1e-13, "x=%v", x)
		}
		x := make([]float64, dims)
		r := rand.New(rand.NewPCG(8, 8))
		for range 500 {
			for j := range x {
				x[j] = r.NormFloat64() * 2
			}
			check(x)
		}
		for _, tr := range f.Trees()[:3] {
			for _, n := range nodesOf(tr) {
				if n.leaf {
					continue
				}
				clear(x)
				for _, v := range []float32{n.thr, math.Nextafter32(n.thr, -1), math.Nextafter32(n.thr, 1)} {
					x[n.feat] = float64(v)
					check(x)
					x[n.feat] = float64(v) + 1e-12
					check(x)
				}
			}
		}
		for _, v := range []float64{0, math.Copysign(0, -1), math.Inf(1), math.Inf(-1), math.NaN()} {
			for j := range x {
				x[j] = v
			}
			check(x)
		}
	}
}

// checkSlab checks the storage invariants: every tree is in the slab at
// the place its summary says, trees do not overlap, f.order lists them by
// place and the slab ends with its pad leaf.
func checkSlab(t *testing.T, f *Forest) {
	t.Helper()
	require.Len(t, f.order, len(f.meta))
	seen := make([]bool, len(f.meta))
	end, boxed := 0, 0
	for _, k := range f.order {
		require.False(t, seen[k], "tree %d listed twice", k)
		seen[k] = true
		m := f.meta[k]
		require.GreaterOrEqual(t, int(m.off), end, "tree %d overlaps the one before it", k)
		end = int(m.off + m.size)
		require.LessOrEqual(t, end, f.limit())
		boxed += b2i(m.boxed)
	}
	require.Equal(t, boxed, f.boxed)
	if len(f.order) > 0 {
		require.True(t, isLeaf(f.words[f.limit()]), "the slab's pad word parks short lane groups: a leaf")
		require.Len(t, f.words, f.limit()+padWords)
	}
}

// The forest keeps its trees in one slab, in the order they were placed:
// a replacement goes after the last tree and leaves garbage, which is packed
// away when the slab is full. Whatever the sequence of Rebuild, SetTree and
// Add, the forest must score exactly like a forest of separately built trees.
func TestSlabMatchesSeparateTrees(t *testing.T) {
	for _, c := range []struct {
		dims  int
		boxes bool
	}{{1, true}, {3, true}, {2, false}} {
		dims := c.dims
		data := gaussData(2000, dims, 5)
		b, ref := NewBuilder(dims), NewBuilder(dims)
		b.KeepBoxes(c.boxes)
		ref.KeepBoxes(c.boxes)
		rngA := rand.New(rand.NewPCG(4, 4))
		rngB := rand.New(rand.NewPCG(4, 4))
		pick := rand.New(rand.NewPCG(5, 5))
		sample := func() []float32 {
			n := 2 + pick.IntN(120) // sizes vary, so trees do
			at := pick.IntN(2000 - n)
			return data[at*dims : (at+n)*dims]
		}
		f := New(dims, nil)
		var trees []*Tree
		for range 6 {
			s := sample()
			f.Add(b, s, rngA)
			trees = append(trees, ref.Build(s, rngB))
		}
		for step := range 400 {
			i := pick.IntN(len(trees))
			s := sample()
			switch step % 4 {
			case 0:
				f.Rebuild(i, b, s, rngA)
				trees[i] = ref.Build(s, rngB)
			case 3: // round-robin, as the detector rebuilds
				i = step / 4 % len(trees)
				f.Rebuild(i, b, s, rngA)
				trees[i] = ref.Build(s, rngB)
			case 1:
				tr := ref.Build(s, pick) // its own stream: A and B stay aligned
				f.SetTree(i, tr)
				trees[i] = tr
			default:
				// A tree of the forest itself, which the move must not clobber.
				j := pick.IntN(len(trees))
				f.SetTree(i, f.Tree(j))
				trees[i] = trees[j]
			}
			if step%50 == 49 && len(trees) < 12 {
				s := sample()
				f.Add(b, s, rngA)
				trees = append(trees, ref.Build(s, rngB))
			}
			want := New(dims, trees)
			x := make([]float64, dims)
			for k := range x {
				x[k] = 3 * pick.NormFloat64()
			}
			require.Equal(t, f.Len(), len(trees))
			for k, tr := range f.Trees() {
				require.Equal(t, trees[k].words, tr.words, "step %d tree %d", step, k)
				require.Equal(t, trees[k].boxDims, tr.boxDims, "step %d tree %d", step, k)
			}
			require.Equal(t, want.Score(x), f.Score(x))
			require.Equal(t, want.ScoreAsInserted(x), f.ScoreAsInserted(x))
			checkSlab(t, f)
		}
		f.compact()
		checkSlab(t, f)
		words := 0
		for _, tr := range trees {
			words += len(tr.words)
		}
		require.Equal(t, words+padWords, cap(f.words), "compact leaves no garbage and no room")
		assert.LessOrEqual(t, f.MemoryBytes(), 2*New(dims, trees).MemoryBytes(), "slab room stays bounded")
	}
}

func TestRebuildAllocatesNothing(t *testing.T) {
	data := gaussData(256, 1, 1)
	f := Fit(data, 1, Options{Trees: 32, SampleSize: 32, Seed: 1})
	b := NewBuilder(1)
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range 64 { // let the slab reach its working size
		f.Rebuild(i%32, b, data[(i%8)*32:(i%8+1)*32], rng)
	}
	i := 0
	allocs := testing.AllocsPerRun(200, func() {
		f.Rebuild(i%32, b, data[(i%8)*32:(i%8+1)*32], rng)
		i++
	})
	assert.Less(t, allocs, 0.1, "a rolling refit allocates (almost) never")
	assert.Panics(t, func() { f.Rebuild(0, NewBuilder(2), data[:4], rng) }, "builder of other dims")
}

// With trees replaced round-robin, as the detector refits, the slab works
// as a ring: a replacement goes where the oldest trees were, and the other
// trees rarely move (a move copies the whole forest).
func TestRoundRobinRebuildsRarelyMove(t *testing.T) {
	b := NewBuilder(2)
	rng := rand.New(rand.NewPCG(2, 2))
	f := New(2, nil)
	for range 32 {
		f.Add(b, gaussData(32, 2, rng.Uint64()), rng)
	}
	const rebuilds = 3200
	moved := 0
	before := make([]uint32, 32)
	for k := range rebuilds {
		for j, m := range f.meta {
			before[j] = m.off
		}
		f.Rebuild(k%32, b, gaussData(32, 2, rng.Uint64()), rng)
		for j, m := range f.meta {
			if j != k%32 && m.off != before[j] {
				moved++
				break
			}
		}
	}
	t.Logf("other trees moved in %d of %d rebuilds", moved, rebuilds)
	assert.Less(t, moved, rebuilds/20)
	checkSlab(t, f)
}

// A split's range is kept rounded outwards, each end to less than 1/128 of
// its distance to the threshold, and encoding the kept range gives it back
// unchanged.
func TestRangeEncoding(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	check := func(thr, lo, hi float32) {
		t.Helper()
		w := encodeRange(thr, lo, hi)
		dl, dh := storedRange(w, thr)
		require.True(t, dl <= lo && dh >= hi, "[%v, %v] around %v kept as [%v, %v]", lo, hi, thr, dl, dh)
		if w != unboundedWord {
			// Each end moves by less than 2^-7 of its distance to the
			// threshold (and by the float32 rounding).
			big := float64(max(math.Abs(float64(thr)), math.Abs(float64(lo)), math.Abs(float64(hi))))
			slack := (float64(hi)-float64(lo))/128 + 2*big*0x1p-24 + 1e-40 // the smallest bfloat16: 9.2e-41
			// Near float32's limit a unit past an end is beyond it: +-Inf.
			if !(math.IsInf(float64(dl), -1) && lo < -math.MaxFloat32/2) {
				require.LessOrEqual(t, float64(lo)-float64(dl), slack, "[%v, %v] around %v kept as [%v, %v]", lo, hi, thr, dl, dh)
			}
			if !(math.IsInf(float64(dh), 1) && hi > math.MaxFloat32/2) {
				require.LessOrEqual(t, float64(dh)-float64(hi), slack, "[%v, %v] around %v kept as [%v, %v]", lo, hi, thr, dl, dh)
			}
		}
		require.Equal(t, w, encodeRange(thr, dl, dh), "re-encoding [%v, %v] around %v", dl, dh, thr)
	}
	for range 200000 {
		scale := math.Pow(10, float64(r.IntN(60)-30))
		lo := float32(r.NormFloat64() * scale)
		hi := lo + float32(r.ExpFloat64()*scale*math.Pow(10, float64(r.IntN(12)-6)))
		if !(hi > lo) {
			continue
		}
		thr := floorFloat32(float64(lo) + r.Float64()*(float64(hi)-float64(lo)))
		if thr >= hi {
			thr = lo
		}
		check(thr, lo, hi)
	}
	inf := float32(math.Inf(1))
	check(0, -inf, 1)
	check(-inf, -inf, 1)
	check(1, 1, inf)
	check(0, -math.MaxFloat32, math.MaxFloat32)
	check(0, 0, math.SmallestNonzeroFloat32)
	check(1e30, 1e30, math.Nextafter32(1e30, inf))
	assert.Equal(t, uint32(unboundedWord), encodeRange(0, -inf, 1))
}
