package detector

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Series of very different levels and spreads share one model: each is
// judged by its own standardised deviation, so a spike is flagged in any of
// them and ordinary noise in none.
func TestGroupedFlagsSpikesAcrossScales(t *testing.T) {
	cfg := DefaultConfig()
	s := NewGrouped(cfg, 8, 0, 0)
	rng := rand.New(rand.NewPCG(1, 1))
	const series, steps, spikeAt = 300, 80, 60
	level := make([]float64, series)
	spread := make([]float64, series)
	for k := range level {
		level[k] = rng.Float64() * 1e4 // 0 .. 10000
		spread[k] = (0.01 + rng.Float64()) * level[k] / 20
	}
	var fp, normal, flagged, spikes int
	for i := range steps {
		for k := range series {
			v := level[k] + spread[k]*rng.NormFloat64()
			spike := i == spikeAt && k%10 == 0
			if spike {
				v = level[k] + 12*spread[k]
				spikes++
			}
			vd := s.Observe(gaugeAt(uint64(k), i, v), 7, int64(i))
			if i < 40 {
				continue
			}
			require.Equal(t, Scored, vd.Status, "step %d series %d", i, k)
			switch {
			case spike && vd.Anomaly:
				flagged++
				require.True(t, vd.HasExpected)
				assert.Less(t, vd.ExpectedMax, v, "the band is below the spike")
				assert.Greater(t, vd.ExpectedMax, level[k], "and around the series' own level")
				assert.Less(t, vd.ExpectedMin, level[k])
			case !spike:
				normal++
				if vd.Anomaly {
					fp++
				}
			}
		}
	}
	t.Logf("flagged %d/%d spikes, %d/%d false alarms", flagged, spikes, fp, normal)
	assert.Equal(t, spikes, flagged)
	assert.Less(t, float64(fp)/float64(normal), 0.002)
	assert.Equal(t, 1, s.Groups())
	assert.Equal(t, series, s.Len())
}

// A series' verdicts depend on its group's data only, so they repeat.
func TestGroupedDeterministic(t *testing.T) {
	run := func() []float64 {
		s := NewGrouped(DefaultConfig(), 8, 0, 0)
		var out []float64
		for i := range 100 {
			for k := range 20 {
				v := s.Observe(gaugeAt(uint64(k), i, float64((i*7+k*13)%23)), 1, int64(i))
				out = append(out, v.Score)
			}
		}
		return out
	}
	assert.Equal(t, run(), run())
}

func TestGroupedWarmupAndKinds(t *testing.T) {
	cfg := DefaultConfig()
	s := NewGrouped(cfg, 8, 0, 0)
	for i := range 8 {
		assert.Equal(t, Warmup, s.Observe(gaugeAt(1, i, float64(i%3)), 1, 0).Status, "baseline warm-up, point %d", i)
	}
	// The group model has its own warm-up (cfg.Warmup deviations).
	st := s.Observe(gaugeAt(1, 8, 1), 1, 0).Status
	assert.Equal(t, Warmup, st)
	p := gaugeAt(1, 9, 5)
	p.Kind = CumulativeSum
	assert.Equal(t, FirstPoint, s.Observe(p, 1, 0).Status, "a series that changes kind starts over")
	assert.Equal(t, 1, s.Len())
	assert.Equal(t, InvalidValue, s.Observe(gaugeAt(2, 0, math.NaN()), 1, 0).Status)
	st2 := s.TakeStats()
	assert.Equal(t, int64(2), st2.Created)
}

func TestGroupedLimitAndMemory(t *testing.T) {
	cfg := DefaultConfig()
	s := NewGrouped(cfg, 8, 256, 0)
	for k := uint64(0); k < 256; k++ {
		require.Equal(t, Warmup, s.Observe(gaugeAt(k, 0, 1), 1, 10).Status)
	}
	// Nothing idle: nothing to spare.
	assert.Equal(t, OverLimit, s.Observe(gaugeAt(1000, 0, 1), 1, 20).Status)
	// Once they are idle (nothing known: fallbackInterval) the newcomer
	// replaces one.
	assert.Equal(t, Warmup, s.Observe(gaugeAt(1001, 0, 1), 1, 11+2*fallbackInterval).Status)
	assert.Equal(t, 256, s.Len())
	st := s.TakeStats()
	assert.Equal(t, int64(1), st.EvictedLimit)
	assert.Equal(t, int64(257), st.Created)
	var tables int
	for i := range s.shards {
		tables += s.shards[i].series.bytes()
	}
	assert.Equal(t, int64(tables)+s.fixed, s.MemoryBytes(), "no group model yet: baselines only")
	assert.LessOrEqual(t, tables/256, 600, "a series costs a few hundred bytes")
	assert.Equal(t, 255, s.Evict(11+2*fallbackInterval))
	assert.Equal(t, 1, s.Len())
	assert.Equal(t, int64(255), s.TakeStats().EvictedIdle)
}

// Idle eviction drops group models too, with their memory.
func TestGroupedEvictsIdleGroups(t *testing.T) {
	s := NewGrouped(DefaultConfig(), 8, 0, 0)
	for i := range 60 {
		for g := uint64(0); g < 5; g++ {
			s.Observe(gaugeAt(g*100, i, float64(i%7)), g, int64(i))
		}
	}
	require.Equal(t, 5, s.Groups())
	require.Greater(t, s.MemoryBytes(), int64(5*8<<10), "warm group models")
	// Groups 0-2 go quiet.
	for i := 60; i < 70; i++ {
		for g := uint64(3); g < 5; g++ {
			s.Observe(gaugeAt(g*100, i, float64(i%7)), g, int64(i))
		}
	}
	s.TakeStats()
	assert.Equal(t, 3, s.Evict(60))
	assert.Equal(t, 2, s.Groups())
	assert.Equal(t, int64(3), s.TakeStats().GroupsEvictedIdle, "the idle groups are counted")
	assert.Equal(t, 2, s.Len())
	s.Evict(1 << 62)
	assert.Zero(t, s.Groups())
	scratch := 0
	for i := range s.scratch {
		scratch += s.scratch[i].sc.memBytes()
	}
	assert.Positive(t, scratch)
	assert.Equal(t, int64(scratch)+s.fixed, s.MemoryBytes(), "what is left is the groups' shared build scratch")
	assert.Equal(t, s.det.fixed, s.det.MemoryBytes(), "group scratch is counted by the Grouped, not again")
}

// Group models have a limit too: a new group takes the place of an idle
// one, or its points pass unscored.
func TestGroupedGroupLimit(t *testing.T) {
	s := NewGrouped(DefaultConfig(), 2, 0, 3)
	obs := func(series, group uint64, now int64) Status {
		return s.Observe(Point{Key: series, Kind: Gauge, Time: now, V0: float64(now % 7)}, group, now).Status
	}
	// Three groups of one series each, every 10 s; past the series' warm-up
	// each point reaches its group.
	for now := int64(1); now <= 40; now += 10 {
		for g := uint64(0); g < 3; g++ {
			obs(g, g, now*sec)
		}
	}
	require.Equal(t, 3, s.Groups())
	obs(3, 3, 41*sec)
	obs(3, 3, 42*sec) // the series' baseline is ready after 2 points
	assert.Equal(t, OverLimit, obs(3, 3, 43*sec), "a fourth group: no room")
	assert.Equal(t, 3, s.Groups())
	// Group 2 stops; groups 0 and 1 go on.
	for now := int64(51); now <= 71; now += 10 {
		obs(0, 0, now*sec)
		obs(1, 1, now*sec)
	}
	st := s.TakeStats()
	assert.Zero(t, st.GroupsEvictedLimit, "no room, and no idle group to make it")
	assert.Equal(t, Warmup, obs(3, 3, 72*sec), "group 2 idle for more than 2 x 10 s makes room")
	assert.Equal(t, 3, s.Groups())
	st = s.TakeStats()
	assert.Equal(t, int64(1), st.GroupsEvictedLimit, "the group that made room is counted")
	assert.Zero(t, st.GroupsEvictedIdle)
	mem := s.MemoryBytes()
	assert.Positive(t, mem)
}
