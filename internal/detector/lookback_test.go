package detector

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDepartureWalksTheRing(t *testing.T) {
	s := &series{dims: 1, win: make([]float32, 0, 4)}
	d := &Detector{cfg: Config{WindowSize: 4}}
	push := func(v float32) {
		if s.rows < 4 {
			s.win = append(s.win, v)
			s.rows++
		} else {
			s.win[s.head] = v
		}
		s.head = (s.head + 1) % d.cfg.WindowSize
	}
	assert.Zero(t, s.departure(4, 0, 3, 7), "no history, nothing to depart from")
	for _, v := range []float32{1, 2, 3, 4, 5, 6} { // wraps: ring holds 3 4 5 6
		push(v)
	}
	assert.InDelta(t, 10-5.0, s.departure(4, 0, 3, 10), 1e-9)   // mean of 6 5 4
	assert.InDelta(t, 10-4.5, s.departure(4, 1, 2, 10), 1e-9)   // mean of 5 4
	assert.InDelta(t, 10-3.0, s.departure(4, 3, 3, 10), 1e-9)   // only 3 is that old
	assert.InDelta(t, 10-4.5, s.departure(4, 0, 100, 10), 1e-9) // the whole ring
	assert.Zero(t, s.departure(4, 4, 3, 10), "history older than the ring")
}

// The departure sums the same rows as a walk back through the ring, one row
// at a time, wherever the ring's seam falls.
func TestDepartureMatchesRowByRowWalk(t *testing.T) {
	const size = 37
	for fill := 1; fill <= 2*size; fill += 5 {
		s := &series{dims: 1}
		for k := range fill {
			v := float32(k*k%23) + 0.25
			if s.rows < size {
				s.win = append(s.win, v)
				s.rows++
			} else {
				s.win[s.head] = v
			}
			s.head = (s.head + 1) % size
		}
		for a0 := 0; a0 <= size; a0++ {
			for n := 1; n <= size+1; n++ {
				var sum float64
				m := min(n, s.rows-a0)
				for k := range max(m, 0) {
					sum += float64(s.win[((s.head-1-a0-k)%size+size)%size])
				}
				want := 0.0
				if m > 0 {
					want = 100 - sum/float64(m)
				}
				require.InDelta(t, want, s.departure(size, a0, n, 100), 1e-9, "fill %d a0 %d n %d", fill, a0, n)
			}
		}
	}
}

// A jump across the usual range, to a value seen many times, is invisible
// to the value alone; its departure from the recent mean shows it.
func TestLookbackSeesAJumpInsideTheRange(t *testing.T) {
	score := func(lookback int) float64 {
		cfg := DefaultConfig()
		cfg.Lookback = lookback
		cfg.Incidents.SuppressRepeats = 0
		d := New(cfg, 0)
		i := 0
		for ; i < 943; i++ { // a slow wave between 0 and 100
			d.Observe(gaugeAt(1, i, 50+50*math.Sin(float64(i)/40)), 0)
		}
		// At i = 943 the wave is at its bottom; jump to its top.
		require.Less(t, 50+50*math.Sin(float64(i)/40), 20.0)
		return d.Observe(gaugeAt(1, i, 99), 0).Score
	}
	without, with := score(0), score(20)
	t.Logf("jump scored %.3f without lookback, %.3f with", without, with)
	assert.Greater(t, with, without+0.15)
}

func TestLookbackOnlyForOneInputModels(t *testing.T) {
	d := New(DefaultConfig(), 0)
	assert.Equal(t, 2, d.forestDims(Gauge, 1))
	assert.Equal(t, 2, d.forestDims(CumulativeSum, 1))
	assert.Equal(t, 2, d.forestDims(CumulativeHistogram, 2))
	assert.Equal(t, 2, d.forestDims(Vector, 2))
	cfg := DefaultConfig()
	cfg.Lookback = 0
	assert.Equal(t, 1, New(cfg, 0).forestDims(Gauge, 1))
}
