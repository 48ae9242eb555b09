package detector

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var year2200 = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

// A point repeated or older than its series' last one is no sighting:
// series_ttl still frees a series that only sends such points.
func TestOutOfOrderIsNoSighting(t *testing.T) {
	d := New(DefaultConfig(), 0)
	require.Equal(t, Warmup, d.Observe(gaugeAt(1, 5, 1), 100).Status)
	require.Equal(t, OutOfOrder, d.Observe(gaugeAt(1, 4, 1), 200).Status)
	assert.Equal(t, 1, d.Evict(150), "last seen at 100")

	s := NewGrouped(DefaultConfig(), 8, 0, 0)
	require.Equal(t, Warmup, s.Observe(gaugeAt(1, 5, 1), 7, 100).Status)
	require.Equal(t, OutOfOrder, s.Observe(gaugeAt(1, 5, 1), 7, 200).Status)
	assert.Equal(t, 1, s.Evict(150), "last seen at 100")

	m := New(DefaultConfig(), 0)
	require.Equal(t, Incomplete, m.ObserveMembers(1, 2, []MemberUpdate{{Index: 0, Time: 10, Value: 1}}, 1, 100).Status)
	require.Equal(t, OutOfOrder, m.ObserveMembers(1, 2, []MemberUpdate{{Index: 0, Time: 10, Value: 1}}, 1, 200).Status)
	assert.Equal(t, 1, m.Evict(150), "last seen at 100")
}

// Points too far ahead of the caller's clock are not learned and do not
// become the series' clock.
func TestFuturePointsAreNotLearned(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxTimeAhead = int64(5 * time.Minute)
	now := int64(time.Hour) // the points of gaugeAt are minutes after 0
	d := New(cfg, 0)
	for i := range cfg.Warmup {
		d.Observe(gaugeAt(1, i, 1), now)
	}
	assert.Equal(t, FutureTime, d.Observe(Point{Key: 1, Kind: Gauge, Time: year2200, V0: 1}, now).Status)
	assert.Equal(t, FutureTime, d.Observe(Point{Key: 2, Kind: Gauge, Time: now + int64(6*time.Minute), V0: 1}, now).Status)
	assert.Equal(t, Warmup, d.Observe(Point{Key: 2, Kind: Gauge, Time: now + int64(4*time.Minute), V0: 1}, now).Status, "within max ahead")
	assert.Equal(t, Scored, d.Observe(gaugeAt(1, cfg.Warmup, 1), now).Status)

	s := NewGrouped(cfg, 2, 0, 0)
	assert.Equal(t, FutureTime, s.Observe(Point{Key: 1, Kind: Gauge, Time: year2200, V0: 1}, 7, now).Status)
	assert.Equal(t, 0, s.Len(), "no baseline for a future point")

	v := d.ObserveMembers(9, 2, []MemberUpdate{{Index: 0, Time: year2200, Value: 1}, {Index: 1, Time: year2200, Value: 1}}, int64(time.Minute), now)
	assert.Equal(t, FutureTime, v.Status)
	v = d.ObserveMembers(9, 2, []MemberUpdate{{Index: 0, Time: now, Value: 1}, {Index: 1, Time: now, Value: 1}}, int64(time.Minute), now)
	assert.Equal(t, Warmup, v.Status, "the future update was not kept")
}

// A model restored with a clock far ahead (saved before the check
// existed) starts its clock over instead of taking every point for out of
// order.
func TestFutureClockStartsOver(t *testing.T) {
	old := New(DefaultConfig(), 0)
	for i := range 40 {
		old.Observe(gaugeAt(1, i, float64(i%5)), 0)
	}
	old.Observe(Point{Key: 1, Kind: Gauge, Time: year2200, V0: 2}, 0)
	old.ObserveMembers(2, 2, []MemberUpdate{{Index: 0, Time: year2200, Value: 1}, {Index: 1, Time: year2200, Value: 1}}, 1, 0)
	var buf bytes.Buffer
	require.NoError(t, old.Snapshot(&buf))

	cfg := DefaultConfig()
	cfg.MaxTimeAhead = int64(5 * time.Minute)
	d := New(cfg, 0)
	require.NoError(t, d.RestoreBytes(buf.Bytes()))
	now := int64(time.Hour)
	assert.Equal(t, Scored, d.Observe(gaugeAt(1, 50, 3), now).Status)
	assert.Equal(t, Warmup, d.ObserveMembers(2, 2, []MemberUpdate{{Index: 0, Time: now, Value: 1}, {Index: 1, Time: now, Value: 1}}, int64(time.Minute), now).Status)
}
