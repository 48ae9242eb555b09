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
