package forest

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// gaussData returns rows*dims standard-normal float32 values.
func gaussData(rows, dims int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	data := make([]float32, rows*dims)
	for i := range data {
		data[i] = float32(r.NormFloat64())
	}
	return data
}

func BenchmarkForestScore(b *testing.B) {
	for _, d := range []int{1, 4} {
		b.Run(fmt.Sprintf("d=%d", d), func(b *testing.B) {
			f := Fit(gaussData(4096, d, 1), d, Options{Trees: 100, SampleSize: 256, Seed: 1})
			// Score a fixed pool of fresh points so branch history cannot
			// memorise one path.
			const pool = 1024
			pts := gaussData(pool, d, 2)
			xs := make([][]float64, pool)
			for i := range xs {
				xs[i] = make([]float64, d)
				for j := range d {
					xs[i][j] = float64(pts[i*d+j])
				}
			}
			b.ReportAllocs()
			var sink float64
			for i := 0; b.Loop(); i++ {
				sink += f.Score(xs[i&(pool-1)])
			}
			_ = sink
		})
	}
}

func BenchmarkFit(b *testing.B) {
	data := gaussData(4096, 4, 1)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		Fit(data, 4, Options{Trees: 100, SampleSize: 256, Seed: uint64(i)})
	}
}

func BenchmarkBuildTree(b *testing.B) {
	for _, c := range []struct{ psi, d int }{{64, 3}, {256, 1}} {
		b.Run(fmt.Sprintf("psi=%d/d=%d", c.psi, c.d), func(b *testing.B) {
			sample := gaussData(c.psi, c.d, 3)
			bl := NewBuilder(c.d)
			rng := rand.New(rand.NewPCG(1, 2))
			var nodes, bytes int
			b.ReportAllocs()
			for b.Loop() {
				t := bl.Build(sample, rng)
				nodes += t.NumNodes()
				bytes += t.MemoryBytes()
			}
			b.ReportMetric(float64(nodes)/float64(b.N), "nodes/tree")
			b.ReportMetric(float64(bytes)/float64(b.N), "bytes/tree")
		})
	}
}

func BenchmarkAttribution(b *testing.B) {
	const d = 4
	f := Fit(gaussData(4096, d, 1), d, Options{Trees: 100, SampleSize: 256, Seed: 1})
	x := []float64{0, 0, 4, 0}
	out := make([]float64, d)
	b.ReportAllocs()
	for b.Loop() {
		f.Attribution(x, out)
	}
}
