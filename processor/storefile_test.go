package iforestprocessor

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/filestorage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.etcd.io/bbolt"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/extension/xextension/storage"
)

// newFileStorage starts a real file_storage extension on dir.
func newFileStorage(t *testing.T, dir string) component.Component {
	t.Helper()
	f := filestorage.NewFactory()
	cfg := f.CreateDefaultConfig().(*filestorage.Config)
	cfg.Directory = dir
	cfg.Timeout = 100 * time.Millisecond
	set := extension.Settings{ID: storageID, TelemetrySettings: componenttest.NewNopTelemetrySettings()}
	ext, err := f.Create(context.Background(), set, cfg)
	require.NoError(t, err)
	require.NoError(t, ext.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, ext.Shutdown(context.Background())) })
	return ext
}

// The processor finds file_storage's file for it, where file_storage puts
// it. If this fails after an upgrade of file_storage, the file is no longer
// checked before it is opened.
func TestFileStorageFile(t *testing.T) {
	dir := t.TempDir()
	ext := newFileStorage(t, dir)
	for _, id := range []component.ID{component.MustNewID("iforest"), component.MustNewIDWithName("iforest", "a/b c")} {
		file := fileStorageFile(ext, id)
		require.NotEmpty(t, file)
		c, err := ext.(storage.Extension).GetClient(context.Background(), component.KindProcessor, id, "")
		require.NoError(t, err)
		_, err = os.Stat(file)
		assert.NoError(t, err, "file_storage made %s", file)
		require.NoError(t, c.Close(context.Background()))
	}
	assert.Equal(t, filepath.Join(dir, "processor_iforest_a~002Fb~0020c"), fileStorageFile(ext, component.MustNewIDWithName("iforest", "a/b c")))
	assert.Empty(t, fileStorageFile(newMemStorage(), component.MustNewID("iforest")))
}

// A damaged file_storage file, truncated as a disk or a copy can leave it:
// bbolt would fault opening it (in a goroutine of its own, where nothing
// can catch it) or reading from it. The processor moves it aside: one
// warning, a fresh start, models saved in a new file; the next start
// restores them. (bbolt grows its file ahead of its data: a cut in what it
// has not used yet damages nothing.)
func TestFileStorageDamagedFile(t *testing.T) {
	withChunkSize(t, 16<<10)
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, file string)
		why    string // "": not damaged
	}{
		{"cut to half", func(t *testing.T, f string) { truncateTo(t, f, fileSize(t, f)/2) }, "truncated"},
		{"last page of the data cut", func(t *testing.T, f string) { truncateTo(t, f, dataSize(t, f)-4096) }, "truncated"},
		{"cut after the data", func(t *testing.T, f string) { truncateTo(t, f, dataSize(t, f)) }, ""},
		{"cut to 1 KiB", func(t *testing.T, f string) { truncateTo(t, f, 1<<10) }, "bbolt cannot open it"},
		{"garbage", func(t *testing.T, f string) {
			require.NoError(t, os.WriteFile(f, bytes.Repeat([]byte("garbage!"), 4096), 0o600))
		}, "bbolt cannot open it"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "processor_iforest_")
			r, err := startPersisting(t, persistConfig(), extHost{storageID: newFileStorage(t, dir)})
			require.NoError(t, err)
			r.feed(t, 0, 60)
			require.NoError(t, r.p.Shutdown(context.Background()))
			c.damage(t, file)

			for run := range 2 {
				r, err = startPersisting(t, persistConfig(), extHost{storageID: newFileStorage(t, dir)})
				require.NoError(t, err)
				r.feed(t, 60+40*run, 100+40*run)
				require.NoError(t, r.p.Shutdown(context.Background()))
				first, _ := scoredIn(r.sink.AllMetrics()[0])
				last, _ := scoredIn(r.sink.AllMetrics()[39])
				assert.Greater(t, last, 5, "run %d scores", run)
				if run == 0 && c.why != "" {
					w := r.warnings()
					require.Len(t, w, 1)
					assert.Contains(t, w[0].Message, "the storage file is damaged; moved it aside (delete it when you like) and started a new one: detection starts fresh")
					assert.Equal(t, file+".damaged", w[0].ContextMap()["moved_to"])
					assert.Contains(t, w[0].ContextMap()["error"], c.why)
					t.Logf("%s %v", w[0].Message, w[0].ContextMap())
					assert.Equal(t, 0, first, "fresh models warm up")
					r.assertSnapshotErrors(t, 1)
				} else {
					assert.Empty(t, r.warnings(), "the new file is sound")
					assert.Equal(t, 1, r.logs.FilterMessageSnippet("restored the saved models").Len())
					assert.Greater(t, first, 10, "restored models score at once")
				}
			}
		})
	}
}

func fileSize(t *testing.T, file string) int64 {
	fi, err := os.Stat(file)
	require.NoError(t, err)
	return fi.Size()
}

// dataSize is how much of a bbolt file its database uses.
func dataSize(t *testing.T, file string) int64 {
	db, err := bbolt.Open(file, 0o600, &bbolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	var n int64
	require.NoError(t, db.View(func(tx *bbolt.Tx) error { n = tx.Size(); return nil }))
	return n
}

func truncateTo(t *testing.T, file string, n int64) {
	t.Logf("%s: %d bytes (%d of data) cut to %d", filepath.Base(file), fileSize(t, file), dataSize(t, file), n)
	require.NoError(t, os.Truncate(file, n))
}

// Two collectors on one storage directory: the second says why it cannot
// use the file and runs without persistence; the first is unaffected.
func TestFileStorageLockedByAnother(t *testing.T) {
	dir := t.TempDir()
	first, err := startPersisting(t, persistConfig(), extHost{storageID: newFileStorage(t, dir)})
	require.NoError(t, err)
	second, err := startPersisting(t, persistConfig(), extHost{storageID: newFileStorage(t, dir)})
	require.NoError(t, err)
	w := second.warnings()
	require.Len(t, w, 1)
	assert.Equal(t, "cannot open its storage: its file is locked by another process: is another collector using the same storage directory? Give each collector its own; detection starts fresh and the models will not be saved in this run",
		w[0].Message)
	second.feed(t, 0, 40)
	last, _ := scoredIn(second.sink.AllMetrics()[39])
	assert.Greater(t, last, 5)
	require.NoError(t, second.p.Shutdown(context.Background()))

	first.feed(t, 0, 40)
	require.NoError(t, first.p.Shutdown(context.Background()))
	assert.Empty(t, first.warnings())
}

// A storage directory the collector may not write: the warning says so.
// Root may write anything, so there is nothing to see as root; the
// message for a permission error is checked without a file system by
// TestStorageTroubleExplained.
func TestFileStorageDirectoryNotWritable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root, which may write a read-only directory (TestStorageTroubleExplained checks the message)")
	}
	dir := t.TempDir()
	ext := newFileStorage(t, dir)
	require.NoError(t, os.Chmod(dir, 0o555))
	t.Cleanup(func() { _ = os.Chmod(dir, 0o755) })
	r, err := startPersisting(t, persistConfig(), extHost{storageID: ext})
	require.NoError(t, err)
	w := r.warnings()
	require.Len(t, w, 1)
	assert.Contains(t, w[0].Message, "cannot open its storage: no permission to write the storage directory or its file")
	require.NoError(t, r.p.Shutdown(context.Background()))
}
