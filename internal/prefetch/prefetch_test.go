package prefetch

import (
	"testing"
	"unsafe"
)

func TestSpan(t *testing.T) {
	for _, c := range []struct{ p, n, start, lines uintptr }{
		{p: 0, n: 1, start: 0, lines: 1},
		{p: 0, n: 64, start: 0, lines: 1},
		{p: 0, n: 65, start: 0, lines: 2},
		{p: 63, n: 1, start: 0, lines: 1},
		{p: 63, n: 2, start: 0, lines: 2},
		{p: 100, n: 28, start: 64, lines: 1}, // 100..127
		{p: 100, n: 29, start: 64, lines: 2}, // 100..128
		{p: 4096 + 8, n: 16 * 29, start: 4096, lines: 8},
	} {
		start, lines := span(c.p, c.n)
		if start != c.start || lines != c.lines {
			t.Errorf("span(%d, %d) = %d, %d; want %d, %d", c.p, c.n, start, lines, c.start, c.lines)
		}
	}
}

// Range must not touch anything past the range (a prefetch never faults,
// but a wrong loop count would spin or run over other memory's lines) and
// must leave the memory as it was.
func TestRangeLeavesMemoryAlone(t *testing.T) {
	buf := make([]byte, 4096)
	for i := range buf {
		buf[i] = byte(i)
	}
	for _, c := range [][2]int{{0, 0}, {0, 1}, {1, 63}, {5, 4000}, {0, 4096}, {4095, 1}} {
		Range(unsafe.Pointer(&buf[c[0]]), uintptr(c[1]))
	}
	Range(nil, 0)
	for i := range buf {
		if buf[i] != byte(i) {
			t.Fatalf("byte %d changed", i)
		}
	}
}
