package detector

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// Prefetch is a hint: observing with it must give the same verdicts as
// without, for new, warming and full (wrapped) windows alike.
func TestPrefetchChangesNothing(t *testing.T) {
	cfg := DefaultConfig()
	cfg.WindowSize = 64 // wrap the ring many times
	plain, hinted := New(cfg, 0), New(cfg, 0)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 600 {
		key := uint64(i % 3)
		p := gaugeAt(key, i/3, 10+rng.NormFloat64())
		hinted.Prefetch(key)
		hinted.Prefetch(key + 100) // no such model
		require.Equal(t, plain.Observe(p, 0), hinted.Observe(p, 0), "point %d", i)
	}
}

// Prefetching is worth it once the models outgrow a core's L2 cache.
func TestPrefetching(t *testing.T) {
	d := New(DefaultConfig(), 0)
	rng := rand.New(rand.NewPCG(5, 6))
	require.False(t, d.Prefetching())
	for i := range 40 {
		for key := range uint64(10) {
			d.Observe(gaugeAt(key, i, 10+rng.NormFloat64()), 0)
		}
	}
	require.Less(t, d.MemoryBytes(), int64(cacheResident), "10 warm models")
	require.False(t, d.Prefetching())
	for i := 40; i < 80; i++ {
		for key := range uint64(60) {
			d.Observe(gaugeAt(key, i, 10+rng.NormFloat64()), 0)
		}
	}
	require.GreaterOrEqual(t, d.MemoryBytes(), int64(cacheResident), "60 warm models")
	require.True(t, d.Prefetching())
}

// The window rows prefetched must cover every row the lookback mean reads
// (one-input models) and the row learn writes: poison every other row and
// the mean must not change.
func TestWindowSpansCoverLookback(t *testing.T) {
	const windowSize = 16
	for _, dims := range []int{1, 2} {
		for rows := 1; rows <= windowSize; rows++ {
			for head := 0; head < windowSize; head++ {
				if rows < windowSize && head != rows%windowSize {
					continue // a growing window's head is its end
				}
				for _, lookback := range []int{1, 3, windowSize - 1} {
					s := &series{dims: dims, rows: rows, head: head, win: make([]float32, rows*dims)}
					for i := range s.win {
						s.win[i] = float32(i + 1)
					}
					want := s.departure(windowSize, 0, lookback, 0)
					if dims > 1 {
						want = 0 // the lookback mean is for one-input models
					}
					in := make([]bool, len(s.win))
					for _, sp := range s.windowSpans(lookback) {
						for i := sp[0]; i < sp[1]; i++ {
							in[i] = true
						}
					}
					for i := range s.win {
						if !in[i] {
							s.win[i] = float32(math.NaN())
						}
					}
					got := 0.0
					if dims == 1 {
						got = s.departure(windowSize, 0, lookback, 0)
					}
					require.Equal(t, want, got, "dims %d rows %d head %d lookback %d", dims, rows, head, lookback)
					if rows == windowSize {
						require.True(t, in[head*dims] && in[head*dims+dims-1], "head row not covered: dims %d head %d", dims, head)
					}
				}
			}
		}
	}
}
