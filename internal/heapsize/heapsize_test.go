package heapsize

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestOf(t *testing.T) {
	for _, c := range []struct {
		n        int
		pointers bool
		want     int
	}{
		{0, false, 0}, {1, false, 8}, {8, false, 8}, {9, false, 16}, {360, true, 384},
		{512, true, 512}, {513, false, 576}, {2304, false, 2304}, {2304, true, 2688},
		{17000, false, 18432}, {32768, false, 32768}, {32769, false, 40960},
		{32760, true, 32768}, {32761, true, 32768}, {32768, true, 32768}, {40000, true, 40960},
	} {
		assert.Equal(t, c.want, Of(c.n, c.pointers), "Of(%d, %v)", c.n, c.pointers)
	}
}

// TestOfMatchesTheHeap checks the table against the running allocator:
// many objects of a size held at once grow the heap by Of(size) each.
func TestOfMatchesTheHeap(t *testing.T) {
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	const count = 2000
	for _, size := range []int{24, 360, 700, 2304, 17000, 40000} {
		// Enough objects of a small size to fill whole spans many times
		// over: a few thousand fit in the spans a P already caches.
		count := max(count, 1<<20/size)
		keep := make([][]byte, count)
		before := heap()
		for i := range keep {
			keep[i] = make([]byte, size)
		}
		per := float64(heap()-before) / float64(count)
		runtime.KeepAlive(keep)
		assert.InDelta(t, float64(Of(size, false)), per, 0.02*float64(Of(size, false))+1, "size %d", size)
	}
	keep := make([][]*byte, count)
	before := heap()
	for i := range keep {
		keep[i] = make([]*byte, 2304/8) // 2304 bytes of pointers
	}
	per := float64(heap()-before) / count
	runtime.KeepAlive(keep)
	assert.InDelta(t, float64(Of(2304, true)), per, 0.02*float64(Of(2304, true))+1)
}
