// Package heapsize estimates what Go's allocator sets aside for an object,
// so that memory estimates of many small models (see the detector's
// MemoryBytes) match the heap they hold rather than the bytes asked for.
package heapsize

// classes are the runtime's size classes up to 32 KiB (Go 1.22 and later,
// internal/runtime/gc/sizeclasses.go): a small object takes the smallest
// class that fits it.
var classes = [...]int{8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256, 288, 320, 352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280, 1408, 1536, 1792, 2048, 2304, 2688, 3072, 3200, 3456, 4096, 4864, 5376, 6144, 6528, 6784, 6912, 8192, 9472, 9728, 10240, 10880, 12288, 13568, 14336, 16384, 18432, 19072, 20480, 21760, 24576, 27264, 28672, 32768}

const (
	maxSmall = 32768
	pageSize = 8192
	// Small objects above this size that contain pointers start with an
	// 8-byte type header (the runtime's minSizeForMallocHeader); large
	// objects (over maxSmall-8 with it) have none.
	headerMin = 512
	header    = 8
)

// Of returns the heap bytes taken by one object of n bytes: its size class,
// or whole 8 KiB pages above 32 KiB. pointers says whether the object
// holds pointers (which adds a header to objects above 512 bytes).
func Of(n int, pointers bool) int {
	if n <= 0 {
		return 0
	}
	if pointers && n > headerMin && n <= maxSmall-header {
		n += header
	}
	if n > maxSmall {
		return (n + pageSize - 1) / pageSize * pageSize
	}
	lo, hi := 0, len(classes)-1 // the first class >= n
	for lo < hi {
		mid := (lo + hi) / 2
		if classes[mid] < n {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return classes[lo]
}
