//go:build !amd64 && !arm64

package prefetch

// rangeLines does nothing where there is no prefetch instruction wired up:
// the data is then loaded when it is read, as without prefetching.
func rangeLines(start, lines uintptr) {}
