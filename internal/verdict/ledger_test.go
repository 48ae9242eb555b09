package verdict

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestLedger(size int) (*Ledger, *fakeClock) {
	c := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	return NewLedger(size, time.Minute, c.now), c
}

func TestLedgerVouchesOnceForWhatWasIssued(t *testing.T) {
	l, _ := newTestLedger(10)
	r := l.Reader("anomalyevents")

	assert.Equal(t, Unknown, r.ClaimStart(1), "never opened")
	assert.Equal(t, Unknown, r.ClaimEnd(1), "never ended")
	assert.False(t, l.Live(1))

	l.Opened(1)
	assert.True(t, l.Live(1))
	assert.True(t, l.IsOpen(1))
	assert.Equal(t, Unknown, r.ClaimEnd(1), "open, not ended")
	assert.Equal(t, Vouched, r.ClaimStart(1))
	assert.Equal(t, Repeated, r.ClaimStart(1), "a copy of the start")
	l.Opened(1) // the same incident registered again changes nothing
	assert.Equal(t, Repeated, r.ClaimStart(1))

	l.Closed(1)
	assert.True(t, l.Live(1), "ended within the grace")
	assert.False(t, l.IsOpen(1))
	assert.Equal(t, Vouched, r.ClaimEnd(1))
	assert.Equal(t, Repeated, r.ClaimEnd(1), "a copy of the end")
	assert.Equal(t, Repeated, r.ClaimStart(1))
}

// A start that reaches the connector after the processor ended the incident
// (a batch held between them) is still vouched for.
func TestLedgerStartAfterEnd(t *testing.T) {
	l, _ := newTestLedger(10)
	r := l.Reader("c")
	l.Opened(7)
	l.Closed(7)
	assert.Equal(t, Vouched, r.ClaimStart(7))
	assert.Equal(t, Vouched, r.ClaimEnd(7))
}

// Each connector reports an incident once; a connector recreated under the
// same name (a configuration reload) keeps its record.
func TestLedgerReaders(t *testing.T) {
	l, _ := newTestLedger(10)
	a, b := l.Reader("anomalyevents/a"), l.Reader("anomalyevents/b")
	l.Opened(3)
	assert.Equal(t, Vouched, a.ClaimStart(3))
	assert.Equal(t, Vouched, b.ClaimStart(3))
	again := l.Reader("anomalyevents/a")
	assert.Equal(t, Repeated, again.ClaimStart(3))
}

func TestLedgerGrace(t *testing.T) {
	l, clock := newTestLedger(10)
	r := l.Reader("c")
	l.Opened(1)
	l.Closed(1)
	clock.advance(59 * time.Second)
	assert.True(t, l.Live(1))
	clock.advance(2 * time.Second)
	assert.False(t, l.Live(1), "dropped after the grace")
	assert.Equal(t, Unknown, r.ClaimEnd(1))
	assert.Zero(t, l.Len())
	assert.Zero(t, l.Evicted(), "expiry is not eviction")

	// Open incidents have no grace: they stay until they end or the bound
	// pushes them out.
	l.Opened(2)
	clock.advance(time.Hour)
	assert.True(t, l.Live(2))
}

func TestLedgerBoundEvictsOldestEndedFirst(t *testing.T) {
	l, _ := newTestLedger(4)
	r := l.Reader("c")
	l.Opened(1)
	l.Opened(2)
	l.Opened(3)
	l.Closed(2)
	l.Closed(3)
	l.Opened(4)
	require.Equal(t, 4, l.Len())

	l.Opened(5) // full: the oldest ended (2) goes
	assert.Equal(t, 4, l.Len())
	assert.False(t, l.Live(2))
	assert.True(t, l.Live(1), "open incidents outlive ended ones")
	assert.True(t, l.Live(3))
	assert.Equal(t, int64(1), l.Evicted())

	l.Opened(6) // 3 goes
	assert.False(t, l.Live(3))
	l.Opened(7) // no ended one left: the oldest open (1) goes
	assert.False(t, l.Live(1))
	assert.True(t, l.Live(4))
	assert.Equal(t, int64(3), l.Evicted())
	assert.Equal(t, 4, l.Len())

	// The end of an incident pushed out while open is still vouched for:
	// the processor says it ended. Its start is not (it was never claimed
	// here, and a late claim cannot be told from a copy).
	l.Closed(1)
	assert.Equal(t, Vouched, r.ClaimEnd(1))
	assert.Equal(t, Repeated, r.ClaimStart(1))
	assert.Equal(t, 4, l.Len())
}

func TestLedgerRestored(t *testing.T) {
	l, _ := newTestLedger(10)
	r := l.Reader("c")
	l.Restored([]uint64{10, 11})
	assert.True(t, l.Live(10))
	assert.Equal(t, Repeated, r.ClaimStart(10), "the start was reported before the restart")
	l.Closed(10)
	assert.Equal(t, Vouched, r.ClaimEnd(10))
}

// Reopening an ended id (the same series and start time replayed) is a new
// report.
func TestLedgerReopen(t *testing.T) {
	l, _ := newTestLedger(10)
	r := l.Reader("c")
	l.Opened(1)
	l.Closed(1)
	require.Equal(t, Vouched, r.ClaimStart(1))
	require.Equal(t, Vouched, r.ClaimEnd(1))
	l.Opened(1)
	assert.Equal(t, Vouched, r.ClaimStart(1))
	assert.Equal(t, Unknown, r.ClaimEnd(1))
}

// Processors and connectors on several goroutines (run with -race): every
// incident is vouched for exactly once per reader, and the bound holds.
func TestLedgerConcurrent(t *testing.T) {
	const size, writers, perWriter = 256, 4, 2000
	l, clock := newTestLedger(size)
	readers := []Reader{l.Reader("a"), l.Reader("b")}
	var wg sync.WaitGroup
	var mu sync.Mutex
	vouched := map[[2]uint64]int{} // (reader, id) -> start claims vouched
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				id := uint64(w*perWriter + i + 1)
				l.Opened(id)
				for ri, r := range readers {
					// Two claims of the same start: at most one is vouched.
					n := 0
					for range 2 {
						if r.ClaimStart(id) == Vouched {
							n++
						}
					}
					mu.Lock()
					vouched[[2]uint64{uint64(ri), id}] += n
					mu.Unlock()
				}
				if i%2 == 0 {
					l.Closed(id)
					_ = readers[0].ClaimEnd(id)
				}
				_ = l.Live(id)
				_ = l.IsOpen(id)
				if i%100 == 0 {
					clock.advance(time.Second)
				}
			}
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, l.Len(), size)
	for k, n := range vouched {
		require.LessOrEqual(t, n, 1, "reader %d, incident %d vouched %d times", k[0], k[1], n)
	}
	assert.Positive(t, l.Evicted())
}

func TestIDs(t *testing.T) {
	assert.Equal(t, "00000000000000ff", FormatID(255))
	for _, id := range []uint64{0, 1, 0x5f0c6e1b2a3d4c5e, ^uint64(0)} {
		got, ok := ParseID(FormatID(id))
		assert.True(t, ok)
		assert.Equal(t, id, got)
	}
	for _, s := range []string{"", "abc", "5f0c6e1b2a3d4c5", "5f0c6e1b2a3d4c5e0", "5f0c6e1b2a3d4c5g", "+f0c6e1b2a3d4c5e", " f0c6e1b2a3d4c5e"} {
		_, ok := ParseID(s)
		assert.False(t, ok, "%q", s)
	}
}

func TestNames(t *testing.T) {
	n := NewNames("anomaly.")
	assert.Equal(t, "anomaly.score", n.Score)
	assert.Equal(t, "anomaly.incident.peak_score", n.IncidentPeak)
	assert.Equal(t, "anomaly.", n.Prefix)
	assert.Equal(t, "x.top_feature", NewNames("x.").TopFeature)
}
