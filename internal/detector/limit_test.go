package detector

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const sec = int64(time.Second)

// observer is what the tests read of a detector of either kind.
type observer interface {
	Len() int
	TakeStats() Stats
}

// obsDetector and obsGrouped observe a gauge point of series k at now (its
// time too, so each series stays in order).
func obsDetector(d *Detector) func(k uint64, now int64) Status {
	return func(k uint64, now int64) Status {
		return d.Observe(Point{Key: k, Kind: Gauge, Time: now, V0: 1}, now).Status
	}
}

func obsGrouped(s *Grouped) func(k uint64, now int64) Status {
	return func(k uint64, now int64) Status {
		return s.Observe(Point{Key: k, Kind: Gauge, Time: now, V0: 1}, 1, now).Status
	}
}

// limited is a detector of either kind with a series limit.
type limited struct {
	name string
	new  func(limit int) (observer, func(k uint64, now int64) Status)
}

var limitedKinds = []limited{
	{"per-series", func(limit int) (observer, func(uint64, int64) Status) {
		d := New(DefaultConfig(), limit)
		return d, obsDetector(d)
	}},
	{"high-cardinality", func(limit int) (observer, func(uint64, int64) Status) {
		s := NewGrouped(DefaultConfig(), 8, limit, 0)
		return s, obsGrouped(s)
	}},
}

// The limit is global: series whose keys all fall into one shard get models
// while fewer than the limit report.
func TestLimitIsGlobal(t *testing.T) {
	for _, kind := range limitedKinds {
		t.Run(kind.name, func(t *testing.T) {
			d, obs := kind.new(100)
			for k := range uint64(100) {
				require.Equal(t, Warmup, obs(64*k, 10*sec), "series %d", k) // all in shard 0
			}
			assert.Equal(t, OverLimit, obs(64*100, 10*sec))
			assert.Equal(t, OverLimit, obs(7, 10*sec), "another shard: still over the limit")
			assert.Equal(t, 100, d.Len())
		})
	}
}

// At the limit only a really idle model makes room: an established one not
// seen for twice its interval, or one of unknown interval not seen for
// twice the typical interval. Series that report keep their models.
func TestLimitEvictsOnlyIdleModels(t *testing.T) {
	for _, kind := range limitedKinds {
		t.Run(kind.name, func(t *testing.T) {
			d, obs := kind.new(3)
			// 0 and 1 report every 10 s; 2 is seen once, at 20 s.
			for now := int64(0); now <= 20; now += 10 {
				obs(0, now*sec)
				obs(1, now*sec)
			}
			obs(2, 20*sec)
			require.Equal(t, 3, d.Len())
			// At 30 s nothing is idle: 2 was seen 10 s ago, and the
			// typical interval is 10 s.
			assert.Equal(t, OverLimit, obs(3, 30*sec))
			obs(0, 30*sec)
			obs(1, 30*sec)
			// At 41 s, 2 has not been seen for more than 2 x 10 s.
			assert.Equal(t, Warmup, obs(4, 41*sec), "the one-off series makes room")
			assert.Equal(t, OverLimit, obs(5, 42*sec), "the reporting series keep theirs")
			// 1 stops reporting; 0 and 4 go on.
			obs(0, 40*sec+500)
			obs(4, 49*sec)
			assert.Equal(t, OverLimit, obs(5, 50*sec), "1 was seen at 30 s: not idle yet")
			obs(0, 50*sec)
			assert.Equal(t, Warmup, obs(5, 51*sec), "1 idle for 21 s > 2 x 10 s")
			st := d.TakeStats()
			assert.Equal(t, int64(2), st.EvictedLimit)
			assert.Equal(t, 3, d.Len())
		})
	}
}

// Round-robin scrapes of more series than the limit do not thrash: the
// first series admitted keep their models, the others are refused.
func TestLimitRoundRobinDoesNotThrash(t *testing.T) {
	for _, kind := range limitedKinds {
		t.Run(kind.name, func(t *testing.T) {
			d, obs := kind.new(100)
			admitted := map[uint64]int{}
			for round := range int64(20) {
				for k := range uint64(150) {
					now := round*15*sec + int64(k)*100*int64(time.Millisecond)
					if obs(k, now) != OverLimit {
						admitted[k]++
					}
				}
			}
			assert.Len(t, admitted, 100)
			for k, n := range admitted {
				assert.Equal(t, 20, n, "series %d", k)
			}
			assert.Zero(t, d.TakeStats().EvictedLimit)
		})
	}
}

// Series seen only within one batch fill every slot (the lock-out): series
// that really report take their places as soon as they are seen coming
// back, without waiting for series_ttl.
func TestLimitLockOutClears(t *testing.T) {
	for _, kind := range limitedKinds {
		t.Run(kind.name, func(t *testing.T) {
			_, obs := kind.new(640)
			t0 := 1000 * sec
			for k := range uint64(640) {
				obs(k, t0)
				obs(k, t0) // twice in the request
			}
			scored := 0
			for i := range int64(10) {
				for k := uint64(1000); k < 1020; k++ {
					if obs(k, t0+(i+1)*10*sec) != OverLimit {
						scored++
					}
				}
			}
			// Each comes back at 10 s, 20 s: by the third point (30 s) the
			// lock-out models are idle for more than 2 x 10 s.
			assert.Equal(t, 20*8, scored)
		})
	}
}

// Restored models count as seen when their shard sees data again: a
// restart after a long downtime evicts nothing at once, and models whose
// series never report again make room later.
func TestRestoredModelsAreNotEvictedAtOnce(t *testing.T) {
	cfg := DefaultConfig()
	src := New(cfg, 0)
	for k := range uint64(10) {
		src.Observe(gaugeAt(k, 0, 1), 100)
	}
	var buf bytes.Buffer
	require.NoError(t, src.Snapshot(&buf))
	d := New(cfg, 10)
	require.NoError(t, d.RestoreBytes(buf.Bytes()))
	later := 100 + int64(24*time.Hour)
	obs := obsDetector(d)
	assert.Equal(t, OverLimit, obs(1000, later), "a restart a day later evicts nothing")
	assert.Equal(t, OverLimit, obs(1000+64, later+2*fallbackInterval))
	assert.Equal(t, Warmup, obs(1000+128, later+2*fallbackInterval+sec), "never reported since: idle")
	assert.Equal(t, int64(1), d.TakeStats().EvictedLimit)
}

// A newcomer finds an idle model in another shard.
func TestLimitLooksInOtherShards(t *testing.T) {
	for _, kind := range limitedKinds {
		t.Run(kind.name, func(t *testing.T) {
			d, obs := kind.new(2)
			obs(1, 0)
			obs(2, 0)
			obs(2, 10*sec)
			obs(2, 20*sec)
			// 1 (shard 1) is idle at 30 s; the newcomer is in shard 5.
			assert.Equal(t, Warmup, obs(5, 30*sec))
			assert.Equal(t, int64(1), d.TakeStats().EvictedLimit)
		})
	}
}

// Concurrent newcomers at the limit (each searching other shards while
// holding its own) neither deadlock nor break the count.
func TestLimitConcurrent(t *testing.T) {
	d := New(DefaultConfig(), 100)
	s := NewGrouped(DefaultConfig(), 2, 100, 5)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range int64(200) {
				now := i * sec
				for k := range uint64(60) {
					key := uint64(g)*1000 + k + uint64(i%3)*100 // some come back, some do not
					d.Observe(Point{Key: key, Kind: Gauge, Time: now, V0: float64(k)}, now)
					s.Observe(Point{Key: key, Kind: Gauge, Time: now, V0: float64(k)}, k%7, now)
				}
			}
		}()
	}
	wg.Wait()
	assert.LessOrEqual(t, d.Len(), 100)
	assert.Equal(t, int64(d.Len()), d.limit.held.Load())
	assert.LessOrEqual(t, s.Len(), 100)
	assert.Equal(t, int64(s.Len()), s.limit.held.Load())
	assert.LessOrEqual(t, s.Groups(), 5)
	d.Evict(1 << 62)
	s.Evict(1 << 62)
	assert.Zero(t, d.limit.held.Load())
	assert.Zero(t, s.limit.held.Load())
}
