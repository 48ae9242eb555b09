//go:build unix

package iforestprocessor

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A real memory fault, as bbolt meets one reading a truncated file through
// its memory map: guard turns it into an error, and a processor whose
// storage faults so starts and works.
func TestGuardCatchesMemoryFault(t *testing.T) {
	page := os.Getpagesize()
	file := filepath.Join(t.TempDir(), "mapped")
	require.NoError(t, os.WriteFile(file, make([]byte, 3*page), 0o600))
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	data, err := syscall.Mmap(int(f.Fd()), 0, 3*page, syscall.PROT_READ, syscall.MAP_SHARED)
	require.NoError(t, err)
	defer func() { require.NoError(t, syscall.Munmap(data)) }()
	require.NoError(t, os.Truncate(file, int64(page)))

	var b byte
	err = guard(func() error { b = data[2*page]; return nil })
	require.Error(t, err)
	assert.True(t, isFault(err))
	assert.Contains(t, err.Error(), "memory fault at 0x")
	assert.Zero(t, b)
	assert.NoError(t, guard(func() error { b = data[0]; return nil }), "within the file")

	st := newMemStorage()
	st.data[testPrefix+manifestKey] = []byte("anything")
	st.onGet = func() { b = data[2*page] }
	r, err := startPersisting(t, persistConfig(), extHost{storageID: st})
	require.NoError(t, err)
	w := r.warnings()
	require.Len(t, w, 1)
	assert.Contains(t, w[0].Message, "the storage extension crashed reading its data")
	assert.Contains(t, w[0].ContextMap()["error"], "memory fault at 0x")
	r.feed(t, 0, 40)
	last, _ := scoredIn(r.sink.AllMetrics()[39])
	assert.Greater(t, last, 5)
	require.NoError(t, r.p.Shutdown(context.Background()))
}
