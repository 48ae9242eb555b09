// Package prefetch asks the CPU to start loading memory that will be read
// soon, without waiting for it.
//
// The processor's time at a thousand and more series goes into cache misses
// on each series' model (about 20 KiB, more than the caches hold for all
// series together). Knowing the next datapoint's model while working on the
// current one, it can have the next model's lines on their way meanwhile.
// A plain load cannot do that: the CPU waits for loads it cannot retire, and
// a few hundred of them fill its reorder window. A prefetch instruction
// retires at once.
//
// Lines go to the L2 cache (PREFETCHT1, PRFM PLDL2KEEP), not L1: an L1
// prefetch holds one of the L1's few miss buffers until its line arrives,
// and with a few hundred lines a model the prefetch instructions then
// stalled the core (BenchmarkProcessor/series=1000: median 320,000 dp/s
// with L1 prefetches, 370,000 with L2 ones, in alternating runs). L2 holds
// the models of the next datapoints easily, and a walk's L2 hits are cheap.
package prefetch

import "unsafe"

// Line is the cache line size the prefetch loop steps by.
const Line = 64

// Range prefetches the n bytes at p into the L2 cache, one instruction per
// line. It reads nothing and never faults: n bytes at p must be a live
// allocation all the same (the caller's promise that makes it useful).
func Range(p unsafe.Pointer, n uintptr) {
	if n == 0 {
		return
	}
	rangeLines(span(uintptr(p), n))
}

// span returns the first line of the n > 0 bytes at p and how many lines
// they touch: from the line that holds p to the one that holds its last byte.
func span(p, n uintptr) (start, lines uintptr) {
	return p &^ (Line - 1), (p+n-1)/Line - p/Line + 1
}
