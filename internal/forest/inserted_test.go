package forest

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAsInsertedEqualsPathLengthOnTrainingPoints(t *testing.T) {
	// A training point lies inside the data range of every node on its own
	// path, so nothing is cut off early and both path lengths agree exactly.
	const dims = 3
	sample := gaussData(64, dims, 4)
	b := NewBuilder(dims)
	tr := b.Build(sample, rand.New(rand.NewPCG(1, 2)))
	x := make([]float64, dims)
	for r := 0; r < 64; r++ {
		for j := range x {
			x[j] = float64(sample[r*dims+j])
		}
		assert.Equal(t, tr.PathLength(x), tr.PathLengthAsInserted(x), "row %d", r)
	}
}

func TestAsInsertedGrowsWithDistance(t *testing.T) {
	f := Fit(gaussData(512, 1, 9), 1, Options{Trees: 50, SampleSize: 64, Seed: 3})
	var maxSeen float64
	for _, tr := range f.Trees() {
		maxSeen = math.Max(maxSeen, float64(nodeAt(tr, 0).hi))
	}
	prev := f.ScoreAsInserted([]float64{maxSeen})
	// Plain isolation scores every point past the maximum alike.
	assert.InDelta(t, f.Score([]float64{maxSeen + 1}), f.Score([]float64{maxSeen + 100}), 1e-12)
	for _, d := range []float64{0.1, 0.5, 1, 3, 10, 100, 1e6} {
		s := f.ScoreAsInserted([]float64{maxSeen + d})
		assert.Greater(t, s, prev, "distance %v", d)
		assert.GreaterOrEqual(t, s, f.Score([]float64{maxSeen + d}))
		prev = s
	}
	// Infinitely far: cut off at the root of every tree, h = 1.
	want := 0.0
	for _, tr := range f.Trees() {
		want += tr.invC
	}
	assert.InDelta(t, math.Exp2(-want/float64(len(f.Trees()))), f.ScoreAsInserted([]float64{math.Inf(1)}), 1e-12)
	assert.InDelta(t, math.Exp2(-want/float64(len(f.Trees()))), f.ScoreAsInserted([]float64{math.Inf(-1)}), 1e-12)
}

func TestAsInsertedSeesGaps(t *testing.T) {
	// Two clusters: a point in the empty middle is more anomalous than
	// either cluster's points although it is inside the overall range.
	data := make([]float32, 0, 512)
	rng := rand.New(rand.NewPCG(5, 5))
	for i := 0; i < 256; i++ {
		data = append(data, float32(rng.NormFloat64()), float32(100+rng.NormFloat64()))
	}
	f := Fit(data, 1, Options{Trees: 100, SampleSize: 256, Seed: 1})
	mid := f.ScoreAsInserted([]float64{50})
	assert.Greater(t, mid, f.ScoreAsInserted([]float64{0})+0.1)
	assert.Greater(t, mid, f.ScoreAsInserted([]float64{100})+0.1)
}

func TestAsInsertedImportedTreesFallBack(t *testing.T) {
	tr, err := ImportTree([]int{0, -2, -2}, []float64{0.5, -2, -2}, []int{1, -1, -1}, []int{2, -1, -1}, []int{4, 2, 2}, 4)
	require.NoError(t, err)
	f := New(1, []*Tree{tr})
	for _, v := range []float64{-10, 0.2, 0.7, 10} {
		assert.Equal(t, f.Score([]float64{v}), f.ScoreAsInserted([]float64{v}))
	}
}

func TestAsInsertedAllocatesNothing(t *testing.T) {
	f := Fit(gaussData(256, 2, 1), 2, Options{Trees: 50, SampleSize: 64, Seed: 1})
	x := []float64{0.3, 9}
	assert.Zero(t, testing.AllocsPerRun(100, func() { f.ScoreAsInserted(x) }))
}

// BenchmarkForestScoreAsInserted scores fresh points; "detector" is the
// detector's model as it was by default until 2026-12-03 (32 trees of psi
// 32 over a value and its departure; 16 trees now), in cache (forests=1) and as one of 1000 series' models
// (forests=1000, about 8 MB: each score then waits on memory).
func BenchmarkForestScoreAsInserted(b *testing.B) {
	for _, c := range []struct {
		name                    string
		dims, trees, psi, count int
	}{{"d=1", 1, 100, 256, 1}, {"d=4", 4, 100, 256, 1}, {"detector/forests=1", 2, 32, 32, 1}, {"detector/forests=1000", 2, 32, 32, 1000}} {
		b.Run(c.name, func(b *testing.B) {
			fs := make([]*Forest, c.count)
			for i := range fs {
				fs[i] = Fit(gaussData(1024, c.dims, uint64(i)), c.dims, Options{Trees: c.trees, SampleSize: c.psi, Seed: uint64(i)})
			}
			q := gaussData(1024, c.dims, 2)
			x := make([]float64, c.dims)
			b.ReportAllocs()
			var sink float64
			for i := 0; b.Loop(); i++ {
				r := i % 1024
				for j := range x {
					x[j] = float64(q[r*c.dims+j])
				}
				sink += fs[i%c.count].ScoreAsInserted(x)
			}
			_ = sink
		})
	}
}

func TestScoreAsInsertedMatchesPerTreeWalk(t *testing.T) {
	// The lockstep walk must equal the one-tree-at-a-time definition,
	// including forests whose size is not a multiple of the lane count.
	for _, c := range []struct{ dims, trees int }{{1, 50}, {3, 13}, {2, 1}} {
		f := Fit(gaussData(512, c.dims, 2), c.dims, Options{Trees: c.trees, SampleSize: 64, Seed: 8})
		// A one-node tree (constant sample) among them: its leaf keeps its
		// range for the cut-off rather than a stored path length.
		single := NewBuilder(c.dims).Build(make([]float32, 8*c.dims), rand.New(rand.NewPCG(1, 1)))
		f = New(c.dims, append(f.Trees()[:c.trees-1:c.trees-1], single))
		rng := rand.New(rand.NewPCG(3, 3))
		x := make([]float64, c.dims)
		for range 500 {
			for j := range x {
				x[j] = 4 * rng.NormFloat64() // many points outside the data's ranges
			}
			var sum float64
			for _, tr := range f.Trees() {
				sum += tr.PathLengthAsInserted(x) * tr.invC
			}
			assert.InDelta(t, math.Exp2(-sum/float64(c.trees)), f.ScoreAsInserted(x), 1e-12)
		}
	}
}

// The lockstep walk compares in float32; at split values, the ends of node
// ranges and their float32 and float64 neighbours, and at NaN, infinities
// and values beyond float32, it must route and cut off exactly like the
// float64 definition.
func TestScoreAsInsertedAtEdges(t *testing.T) {
	for _, dims := range []int{1, 3} {
		f := Fit(gaussData(512, dims, 4), dims, Options{Trees: 20, SampleSize: 64, Seed: 5})
		check := func(x []float64) {
			var sum float64
			for _, tr := range f.Trees() {
				sum += tr.PathLengthAsInserted(x) * tr.invC
			}
			require.InDelta(t, math.Exp2(-sum/20), f.ScoreAsInserted(x), 1e-12, "x=%v", x)
		}
		x := make([]float64, dims)
		for feat := range dims {
			vals := edgeValues(f, feat)
			for _, tr := range f.Trees() {
				for _, n := range nodesOf(tr) {
					if !n.leaf && n.feat == feat {
						for _, b := range []float32{n.lo, n.hi} {
							v := float64(b)
							vals = append(vals, v, math.Nextafter(v, math.Inf(1)), math.Nextafter(v, math.Inf(-1)))
						}
					}
				}
			}
			for _, v := range vals {
				x[feat] = v
				check(x)
			}
			x[feat] = 0.1
		}
	}
}

func TestAsInsertedFlagsTheFirstChangeOfAConstantSeries(t *testing.T) {
	data := make([]float32, 64) // all zero
	f := Fit(data, 1, Options{Trees: 20, SampleSize: 32, Seed: 1})
	assert.InDelta(t, 0.5, f.Score([]float64{0.127}), 1e-9, "the paper's score cannot tell")
	assert.InDelta(t, 0.5, f.ScoreAsInserted([]float64{0}), 1e-9)
	// Cut off at the root of every tree: h = 1.
	assert.InDelta(t, math.Exp2(-1/AvgPathLength(32)), f.ScoreAsInserted([]float64{0.127}), 1e-9)
}

// ScoreAsInsertedBelow either stops after the first eight trees with their
// score, below the floor, or returns ScoreAsInserted's score bit for bit;
// forests of at most eight trees, boxed and wide forests never stop.
func TestScoreAsInsertedBelow(t *testing.T) {
	boxed := NewBuilder(2)
	boxed.KeepBoxes(true)
	for _, c := range []struct {
		name        string
		dims, trees int
		b           *Builder // nil: Fit's
		mayStop     bool
	}{
		{"detector", 2, 32, nil, true},
		{"one feature, short last group", 1, 13, nil, true},
		{"nine trees", 3, 9, nil, true},
		{"eight trees", 2, 8, nil, false},
		{"five trees", 1, 5, nil, false},
		{"boxed", 2, 32, boxed, false},
		{"wide", maxInsertedDims + 1, 32, nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var f *Forest
			if c.b == nil {
				f = Fit(gaussData(1024, c.dims, 6), c.dims, Options{Trees: c.trees, SampleSize: 32, Seed: 2})
			} else {
				data := gaussData(1024, c.dims, 6)
				rng := rand.New(rand.NewPCG(2, 2))
				f = New(c.dims, nil)
				for i := range c.trees {
					f.Add(c.b, data[i*32*c.dims:(i+1)*32*c.dims], rng)
				}
			}
			require.Equal(t, c.trees, f.Len())
			require.Equal(t, c.b != nil, f.boxed == c.trees, "boxed trees")
			trees := f.Trees()
			rng := rand.New(rand.NewPCG(3, 3))
			x := make([]float64, c.dims)
			stopped := 0
			for range 400 {
				for j := range x {
					x[j] = 2 * rng.NormFloat64() // inside and outside the data
				}
				full := f.ScoreAsInserted(x)
				var sum8 float64
				for _, tr := range trees[:min(8, len(trees))] {
					sum8 += tr.PathLengthAsInserted(x) * tr.invC
				}
				part := math.Exp2(-sum8 / 8)
				for _, floor := range []float64{0, 0.3, 0.45, 0.5, 0.55, 0.7, 1.01, math.Inf(1)} {
					s, complete := f.ScoreAsInsertedBelow(x, floor)
					if complete {
						require.Equal(t, math.Float64bits(full), math.Float64bits(s), "x=%v floor=%v", x, floor)
						if c.mayStop {
							require.GreaterOrEqual(t, part+1e-12, floor, "x=%v: the first eight score below the floor, yet no stop", x)
						}
						continue
					}
					stopped++
					require.True(t, c.mayStop, "stopped early")
					require.Less(t, s, floor)
					require.InDelta(t, part, s, 1e-12, "x=%v", x)
				}
			}
			if c.mayStop {
				// At floor 1.01 every point stops; at 0 none does.
				assert.GreaterOrEqual(t, stopped, 800)
			}
		})
	}
}

func TestScoreAsInsertedBelowAllocatesNothing(t *testing.T) {
	f := Fit(gaussData(256, 2, 1), 2, Options{Trees: 32, SampleSize: 32, Seed: 1})
	x := []float64{0.3, 0.1}
	_, complete := f.ScoreAsInsertedBelow(x, 1.01)
	require.False(t, complete)
	assert.Zero(t, testing.AllocsPerRun(100, func() { f.ScoreAsInsertedBelow(x, 1.01) }))
	assert.Zero(t, testing.AllocsPerRun(100, func() { f.ScoreAsInsertedBelow(x, 0) }))
}
