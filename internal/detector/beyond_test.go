package detector

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBeyondLiftsValuesPastTheRange(t *testing.T) {
	s := &series{kind: Gauge, dims: 1, rows: beyondMinRows, lo: 10, hi: 20}
	assert.Equal(t, 0.6, s.beyond(15, 0.6), "inside the range: the forest's score")
	assert.Equal(t, 0.6, s.beyond(20, 0.6), "at the edge")
	// 15% of the width beyond closes half the gap to 1, on either side.
	assert.InDelta(t, 0.8, s.beyond(20+1.5, 0.6), 1e-9)
	assert.InDelta(t, 0.8, s.beyond(10-1.5, 0.6), 1e-9)
	// Further out is higher, and never past 1.
	assert.Greater(t, s.beyond(40, 0.6), s.beyond(30, 0.6))
	assert.Less(t, s.beyond(1e30, 0.6), 1.0+1e-12)

	constant := &series{kind: Gauge, dims: 1, rows: beyondMinRows, lo: 5, hi: 5}
	assert.Equal(t, 1.0, constant.beyond(5.1, 0.7), "beyond a constant window")

	young := &series{kind: Gauge, dims: 1, rows: beyondMinRows - 1, lo: 10, hi: 20}
	assert.Equal(t, 0.6, young.beyond(100, 0.6), "too few points for a yardstick")
	joined := &series{kind: Vector, dims: 1, rows: beyondMinRows, lo: 10, hi: 20}
	assert.Equal(t, 0.6, joined.beyond(100, 0.6), "joined models are scored by the forest only")
}

// The range follows the window exactly: a value that left it stops
// counting.
func TestBeyondRangeFollowsTheWindow(t *testing.T) {
	cfg := DefaultConfig()
	cfg.WindowSize, cfg.Warmup = 300, 32
	cfg.plain = true // the window holds the values themselves
	d := New(cfg, 0)
	d.Observe(gaugeAt(1, 0, 1000), 0)
	for i := 1; i < 700; i++ {
		d.Observe(gaugeAt(1, i, float64(i%10)), 0)
	}
	s := d.shards[1%uint64(len(d.shards))].series[1]
	assert.Equal(t, float32(0), s.lo)
	assert.Equal(t, float32(9), s.hi, "the early 1000 has left the window")
	v := d.Observe(gaugeAt(1, 700, 30), 0)
	assert.Greater(t, v.Score, 0.95, "three widths beyond the range")
}

// The incremental range equals a scan of the window after every point,
// also on a quantised series whose extremes repeat.
func TestBeyondRangeIsExact(t *testing.T) {
	cfg := DefaultConfig()
	cfg.WindowSize = 50
	cfg.plain = true
	d := New(cfg, 0)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 2000 {
		d.Observe(gaugeAt(1, i, float64(rng.IntN(6))+float64(i/500)), 0)
		s := d.shards[1%uint64(len(d.shards))].series[1]
		lo, hi := slices.Min(s.win), slices.Max(s.win)
		nlo, nhi := 0, 0
		for _, v := range s.win {
			nlo += b2i(v == lo)
			nhi += b2i(v == hi)
		}
		require.Equal(t, []any{lo, hi, int32(nlo), int32(nhi)}, []any{s.lo, s.hi, s.nlo, s.nhi}, "point %d", i)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// A one-input model learns a value far beyond its window's range at
// beyondLearn range widths: the window's range stays a yardstick, and a
// level shift is learned within a few points.
func TestFarValuesAreLearnedNearTheRange(t *testing.T) {
	cfg := DefaultConfig()
	cfg.plain = true // the window holds the values themselves
	d := New(cfg, 0)
	for i := range 100 {
		d.Observe(gaugeAt(1, i, float64(10+i%5)), 0) // range [10, 14]
	}
	d.Observe(gaugeAt(1, 100, math.MaxFloat64), 0)
	s := d.shards[1%uint64(len(d.shards))].series[1]
	assert.Equal(t, float32(14+beyondLearn*4), s.hi)
	// A shift to 1000 is learned as it is by its fourth point.
	for i := 101; i < 105; i++ {
		d.Observe(gaugeAt(1, i, 1000), 0)
	}
	assert.Equal(t, float32(1000), s.hi)
	assert.Equal(t, float32(1000), s.win[s.head-1], "the last point")
}
