// Package scenario generates labelled test series, so tests need no data
// files from outside the repository.
package scenario

import (
	"math"
	"math/rand/v2"
	"time"
)

// Row is one sample of a generated series.
type Row struct {
	Time    time.Time
	Value   float64
	Anomaly bool
}

// SeedCPU follows the seed tutorial's recipe: one day of one-minute CPU
// utilisation samples drawn from normal(35, 5) clipped to [20, 50], with
// three 5-point spikes drawn from uniform(70, 95). spikeStarts gives the rows
// where spikes begin; nil uses the seed's rows 87, 646 and 859.
func SeedCPU(seed uint64, spikeStarts []int) []Row {
	if spikeStarts == nil {
		spikeStarts = []int{87, 646, 859}
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	rows := make([]Row, 1440)
	for i := range rows {
		v := 35 + 5*rng.NormFloat64()
		rows[i] = Row{Time: start.Add(time.Duration(i) * time.Minute), Value: math.Max(20, math.Min(50, v))}
	}
	for _, s := range spikeStarts {
		for i := s; i < s+5 && i < len(rows); i++ {
			rows[i].Value = 70 + 25*rng.Float64()
			rows[i].Anomaly = true
		}
	}
	return rows
}

// Row2 is one sample of a generated two-metric series.
type Row2 struct {
	Time           time.Time
	CPU, Mem       float64
	CPUHit, MemHit bool // which metric was disturbed
}

// SeedCPUMem follows the seed's "mini-challenge": CPU as in SeedCPU and
// memory utilisation from normal(55, 5) clipped to [40, 70] with three
// 5-point spikes of its own from uniform(85, 98), at rows 1051, 1086 and 1322.
func SeedCPUMem(seed uint64) []Row2 {
	cpu := SeedCPU(seed, nil)
	rng := rand.New(rand.NewPCG(seed, 0x3e3))
	rows := make([]Row2, len(cpu))
	for i, r := range cpu {
		rows[i] = Row2{Time: r.Time, CPU: r.Value, CPUHit: r.Anomaly, Mem: math.Max(40, math.Min(70, 55+5*rng.NormFloat64()))}
	}
	for _, s := range []int{1051, 1086, 1322} {
		for i := s; i < s+5; i++ {
			rows[i].Mem = 85 + 13*rng.Float64()
			rows[i].MemHit = true
		}
	}
	return rows
}

// Excursions is n one-minute samples of noise around 35 (sd 2) with an
// excursion of one shape (+30, +40, +44, +40, +30) every period rows from
// row first, labelled anomalous; sizes scales excursion k (the k-th, from
// 0) by sizes[k] (default 1: all identical). It returns the rows and the
// excursions' first rows. The series an operator calls normal once and
// that should stop alarming (feedback tests).
func Excursions(seed uint64, n, first, period int, sizes map[int]float64) ([]Row, []int) {
	rng := rand.New(rand.NewPCG(seed, 15))
	shape := []float64{30, 40, 44, 40, 30}
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	rows := make([]Row, n)
	for i := range rows {
		rows[i] = Row{Time: start.Add(time.Duration(i) * time.Minute), Value: 35 + 2*rng.NormFloat64()}
	}
	var starts []int
	for k, s := 0, first; s+len(shape) <= n; k, s = k+1, s+period {
		size := 1.0
		if f, ok := sizes[k]; ok {
			size = f
		}
		for j, d := range shape {
			rows[s+j].Value, rows[s+j].Anomaly = 35+size*d, true
		}
		starts = append(starts, s)
	}
	return rows, starts
}
