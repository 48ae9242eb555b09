package detector

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCalibratorUpper(t *testing.T) {
	var c calibrator
	c.init()
	rng := rand.New(rand.NewPCG(1, 1))
	for range 20000 {
		c.add(0.4 + 0.3*rng.ExpFloat64())
	}
	prev := 0.0
	for _, share := range []float64{0.5, 0.3, 0.15} {
		u := c.upper(share)
		assert.Greater(t, u, prev, "share %v", share)
		prev = u
		assert.InDelta(t, share, c.above(u)/float64(c.total), 1e-4, "share %v: u %v", share, u)
		assert.GreaterOrEqual(t, c.tail(u-0.01), share)
		assert.Less(t, c.tail(u+0.01), share)
	}
	// An exponential above 0.4 of mean 0.3: its upper 30% start at
	// 0.4+0.3*ln(1/0.3), up to the prior's fading weight and the bins.
	assert.InDelta(t, 0.4+0.3*math.Log(1/0.3), c.upper(0.3), 0.02)
}

// A point below the exit floor calibrates to at most 1/(1 + exitShare x
// points per week), and the floor is 0 (no exit) where that is not far
// below the threshold or while a stretch is under way.
func TestExitFloor(t *testing.T) {
	lr := newLongRun()
	lr.step = 300
	rng := rand.New(rand.NewPCG(2, 2))
	for range 5000 {
		raw := 0.3 + 0.15*rng.Float64()
		lr.calibrate(raw, calStart)
		lr.count(lr.u)
	}
	floor := lr.exitFloor(0.8)
	require.Greater(t, floor, 0.3)
	require.Less(t, floor, 0.45)
	most := 1 / (1 + exitShare*lr.perWeek())
	for raw := 0.2; raw < floor; raw += 0.001 {
		c := *lr
		assert.LessOrEqual(t, c.calibrate(raw, calStart), most+1e-12, "raw %v", raw)
	}
	assert.Greater(t, lr.calibrate(0.45, calStart), most, "the top of the body")

	assert.Equal(t, floor, lr.exitFloor(0.99), "at 5 minutes even a high threshold is far above")
	lr.step = 3600
	assert.Zero(t, lr.exitFloor(0.4), "hourly, threshold 0.4: 50 points a week reach the floor, 1.5 the threshold")
	assert.Equal(t, floor, lr.exitFloor(0.8))
	lr.step = 86400
	assert.Zero(t, lr.exitFloor(0.8), "daily: 2 points a week reach the floor")
	lr.step = 300
	lr.cal.best = 0.005
	assert.Zero(t, lr.exitFloor(0.8), "a stretch under way")
}

// lifts says exactly when beyond changes a score.
func TestLiftsMatchesBeyond(t *testing.T) {
	d := New(DefaultConfig(), 0)
	rng := rand.New(rand.NewPCG(3, 3))
	i := 0
	feedAt(d, 1, monday, 5*time.Minute, 600, func(time.Time) float64 {
		i++
		switch i {
		case 400: // outliers that widen the window's range: within it, far lifts alone
			return 80
		case 450:
			return 20
		}
		return 50 + 2*rng.NormFloat64()
	})
	s := d.shards[1%uint64(len(d.shards))].series[1]
	require.Greater(t, s.rows, beyondMinRows)
	require.GreaterOrEqual(t, int(s.lr.spreadN), farLiftPoints)
	inside, beyond := 0, 0 // lifted values inside and beyond the window's range
	for v := -40.0; v <= 40; v += 0.01 {
		for _, r := range []float64{v, float64(s.lo), float64(s.hi), math.Nextafter(float64(s.hi), 100)} {
			changed := s.beyond(r, 0.3) != 0.3
			require.Equal(t, changed, s.lifts(r), "r %v (window %v..%v, usual residual %v)", r, s.lo, s.hi, s.lr.spread)
			switch {
			case !changed:
			case r >= float64(s.lo) && r <= float64(s.hi):
				inside++
			default:
				beyond++
			}
		}
	}
	assert.Greater(t, inside, 1000, "far out in usual residuals")
	assert.Greater(t, beyond, 1000)
}

// The early exit changes the scores of ordinary points only: on a series
// with spikes, a level shift and a slow ramp, the same points flag and the
// same incidents open and close as when every point is scored over all
// trees.
func TestEarlyExitKeepsVerdicts(t *testing.T) {
	gen := func() func(time.Time) float64 {
		rng := rand.New(rand.NewPCG(4, 4))
		i := 0
		return func(time.Time) float64 {
			i++
			v := 100 + 3*rng.NormFloat64()
			switch {
			case i%700 == 0:
				v += 40 // a spike
			case i >= 3000 && i < 3200:
				v += float64(i-3000) / 10 // a ramp
			case i >= 3500:
				v += 25 // a new level
			}
			return v
		}
	}
	full := DefaultConfig()
	full.allTrees = true
	const n = 4500
	got := feedAt(New(DefaultConfig(), 0), 1, monday, time.Minute, n, gen())
	want := feedAt(New(full, 0), 1, monday, time.Minute, n, gen())
	flags, differ := 0, 0
	for i := range n {
		require.Equal(t, want[i].Anomaly, got[i].Anomaly, "point %d: score %v, over all trees %v", i, got[i].Score, want[i].Score)
		require.Equal(t, want[i].Incident, got[i].Incident, "point %d", i)
		if got[i].Anomaly {
			flags++
		}
		if got[i].Score != want[i].Score {
			differ++
			// Whatever the exit did to the calibration, ordinary points
			// stay ordinary.
			require.Less(t, math.Max(got[i].Score, want[i].Score), 0.5, "point %d", i)
		}
	}
	assert.Greater(t, flags, 5, "the spikes, the ramp and the shift flag")
	assert.Greater(t, differ, n/4, "the exit applies to many points")
}
