package detector

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otel-iforest/iforest/internal/scenario"
)

const minute = int64(time.Minute)

func TestJoinWaitsForEveryMember(t *testing.T) {
	d := New(DefaultConfig(), 0)
	stale := 2 * minute
	// Only member 0 so far: nothing to score.
	v := d.ObserveMembers(1, 2, []MemberUpdate{{Index: 0, Time: minute, Value: 1}}, stale, 0)
	assert.Equal(t, Incomplete, v.Status)
	// Member 1 arrives 30 s later: the vector of latest values is complete.
	v = d.ObserveMembers(1, 2, []MemberUpdate{{Index: 1, Time: minute + 30e9, Value: 2}}, stale, 0)
	assert.Equal(t, Warmup, v.Status)
	// Member 0 again, 3 minutes after member 1's last value: member 1 is stale.
	v = d.ObserveMembers(1, 2, []MemberUpdate{{Index: 0, Time: 4*minute + 31e9, Value: 1}}, stale, 0)
	assert.Equal(t, Incomplete, v.Status)
	// An old or repeated update of a member changes nothing.
	v = d.ObserveMembers(1, 2, []MemberUpdate{{Index: 1, Time: minute + 30e9, Value: 9}}, stale, 0)
	assert.Equal(t, OutOfOrder, v.Status)
	s := d.shards[1%uint64(len(d.shards))].series[1]
	assert.Equal(t, 2.0, s.members[1].value)
	assert.Equal(t, 1, s.learned)
}

func TestJoinSkipsNonFiniteMembers(t *testing.T) {
	d := New(DefaultConfig(), 0)
	v := d.ObserveMembers(1, 1, []MemberUpdate{{Index: 0, Time: minute, Value: 1.0 / zero()}}, minute, 0)
	assert.Equal(t, OutOfOrder, v.Status, "an infinite value is not a fresh member value")
}

func zero() float64 { return 0 }

// The seed's two-metric challenge through a joined model: every spike
// flagged, few false alarms, and the attribution names the disturbed metric.
func TestSeedCPUMemory(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		rows := scenario.SeedCPUMem(seed)
		// The settings of examples/seed-cpu-memory.yaml: a joined model
		// affords a larger forest than a per-series one.
		cfg := DefaultConfig()
		cfg.Trees, cfg.SampleSize, cfg.RefitInterval, cfg.Threshold = 100, 64, 4, 0.78
		d := New(cfg, 0)
		var tp, fp, injected, rightTop, flaggedInjected int
		for i, r := range rows {
			ts := int64(i+1) * minute
			v := d.ObserveMembers(5, 2, []MemberUpdate{{0, ts, r.CPU}, {1, ts, r.Mem}}, 2*minute, 0)
			hit := r.CPUHit || r.MemHit
			if hit {
				injected++
			}
			if !v.Anomaly {
				continue
			}
			require.Len(t, v.Contributions, 2)
			assert.InDelta(t, 1, v.Contributions[0]+v.Contributions[1], 1e-9)
			if !hit {
				fp++
				continue
			}
			tp++
			flaggedInjected++
			top := 0
			if v.Contributions[1] > v.Contributions[0] {
				top = 1
			}
			if (top == 0) == r.CPUHit {
				rightTop++
			}
		}
		assert.GreaterOrEqual(t, tp, 27, "seed %d: %d of %d injected rows flagged", seed, tp, injected)
		assert.LessOrEqual(t, fp, 3, "seed %d: false alarms", seed)
		assert.GreaterOrEqual(t, float64(rightTop)/float64(flaggedInjected), 0.9, "seed %d: top feature right %d of %d", seed, rightTop, flaggedInjected)
	}
}
