//go:build amd64 || arm64

package prefetch

// rangeLines prefetches lines (>= 1) consecutive cache lines from start
// (line aligned). The address is a uintptr on purpose: it is only a hint,
// and the garbage collector need not see it.
func rangeLines(start, lines uintptr)
