package detector

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otel-iforest/iforest/internal/scenario"
)

// feed runs a sequence of anomalous (true) and normal (false) verdicts
// through an incident state and returns the verdicts as filled in.
func feed(c IncidentConfig, flags []bool) []Verdict {
	var in incident
	out := make([]Verdict, len(flags))
	for i, f := range flags {
		v := Verdict{Status: Scored, Anomaly: f, Score: 0.5}
		if f {
			v.Score = 0.8 + float64(i)/100
		}
		in.update(&c, 42, int64(i)*1e9, &v, false)
		out[i] = v
	}
	return out
}

func transitions(vs []Verdict) map[int]Transition {
	m := map[int]Transition{}
	for i, v := range vs {
		if v.Incident != NoTransition {
			m[i] = v.Incident
		}
	}
	return m
}

func TestIncidentOpensOnFirstAnomalyAndClosesAfterQuiet(t *testing.T) {
	vs := feed(DefaultIncidentConfig(), []bool{false, true, true, false, true, false, false, false, false, false, false})
	assert.Equal(t, map[int]Transition{1: Started, 9: Ended}, transitions(vs))
	id := vs[1].IncidentID
	require.NotZero(t, id)
	for i := 1; i <= 9; i++ {
		assert.Equal(t, id, vs[i].IncidentID, "point %d belongs to the incident", i)
	}
	assert.Zero(t, vs[10].IncidentID)
	assert.Equal(t, int64(8e9), vs[9].IncidentDuration)
	assert.InDelta(t, 0.84, vs[9].IncidentPeak, 1e-12)
}

func TestIncidentPersistence(t *testing.T) {
	c := IncidentConfig{OpenAfter: 2, OpenWindow: 3, CloseAfter: 2}
	// A lone anomaly opens nothing; two within three points do.
	vs := feed(c, []bool{true, false, false, true, false, true, false, false})
	assert.Equal(t, map[int]Transition{5: Started, 7: Ended}, transitions(vs))
}

func TestIncidentCooldown(t *testing.T) {
	c := IncidentConfig{OpenAfter: 1, OpenWindow: 1, CloseAfter: 1, Cooldown: 2}
	vs := feed(c, []bool{true, false, true, true, true, false})
	// Ended at 1; points 2 and 3 are in the cooldown; 4 opens again.
	assert.Equal(t, map[int]Transition{0: Started, 1: Ended, 4: Started, 5: Ended}, transitions(vs))
	assert.NotEqual(t, vs[0].IncidentID, vs[4].IncidentID)
}

// The seed scenario yields exactly one incident per spike, opened at the
// spike's first or second point, and the band of normal values given with
// it covers the normal rows.
func TestSeedScenarioIncidents(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		rows := scenario.SeedCPU(seed, nil)
		d := New(DefaultConfig(), 0)
		var started, ended []int
		var bands [][2]float64
		for i, r := range rows {
			v := d.Observe(gaugeAt(9, i, r.Value), 0)
			switch v.Incident {
			case Started:
				started = append(started, i)
				require.True(t, v.HasExpected, "row %d: no expected range", i)
				bands = append(bands, [2]float64{v.ExpectedMin, v.ExpectedMax})
				assert.False(t, r.Value >= v.ExpectedMin && r.Value <= v.ExpectedMax, "the flagged value lies inside its own normal band")
			case Ended:
				ended = append(ended, i)
			}
		}
		require.Len(t, started, 3, "seed %d: started at %v", seed, started)
		require.Len(t, ended, 3, "seed %d: ended at %v", seed, ended)
		for k, s := range []int{87, 646, 859} {
			assert.Contains(t, []int{s, s + 1}, started[k], "seed %d", seed)
			assert.Greater(t, ended[k], s+4, "seed %d: ended before the spike was over", seed)
			inside, normal := 0, 0
			for _, r := range rows {
				if !r.Anomaly {
					normal++
					if r.Value >= bands[k][0] && r.Value <= bands[k][1] {
						inside++
					}
				}
			}
			assert.GreaterOrEqual(t, float64(inside)/float64(normal), 0.95, "seed %d spike %d: band %v", seed, k, bands[k])
		}
	}
}

func TestExpectedRangeInCounterUnits(t *testing.T) {
	// A counter growing by ~10/s, then a burst: the band is told in counter
	// values (previous value + normal increase), not in rates.
	d := New(DefaultConfig(), 0)
	var total float64
	var last Verdict
	for i := 0; i < 200; i++ {
		inc := 600 + float64(i%7) // ~10/s at one point per minute
		if i == 150 {
			inc = 60000
		}
		prev := total
		total += inc
		v := d.Observe(Point{Key: 3, Kind: CumulativeSum, Start: 1, Time: int64(i+1) * 60e9, V0: total}, 0)
		if i == 150 {
			last = v
			require.True(t, v.Anomaly)
			require.True(t, v.HasExpected)
			assert.Less(t, v.ExpectedMin, prev+600+1)
			assert.Greater(t, v.ExpectedMax, prev+606-1)
			assert.Less(t, v.ExpectedMax, total)
		}
	}
	assert.Equal(t, Started, last.Incident)
}

// OpenIncidents lists the incidents open at a snapshot, also after Restore,
// and none once they ended.
func TestOpenIncidents(t *testing.T) {
	rows := scenario.SeedCPU(4, []int{300})
	d := New(DefaultConfig(), 0)
	var open []uint64
	observe := func(d *Detector, i int) Verdict {
		return d.Observe(Point{Key: 9, Kind: Gauge, Time: rows[i].Time.UnixNano(), V0: rows[i].Value}, rows[i].Time.UnixNano())
	}
	for i := range 302 {
		if v := observe(d, i); v.Incident == Started {
			open = append(open, v.IncidentID)
		} else if v.Incident == Ended {
			open = open[:0]
		}
	}
	require.Len(t, open, 1, "the spike at row 300 opened an incident")
	assert.Equal(t, open, d.OpenIncidents())

	restored := New(DefaultConfig(), 0)
	require.NoError(t, restored.RestoreBytes(snapshotBytes(t, d)))
	assert.Equal(t, open, restored.OpenIncidents())

	for i := 302; i < 340; i++ {
		observe(restored, i)
	}
	assert.Empty(t, restored.OpenIncidents())
}
