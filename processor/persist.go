package iforestprocessor

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc64"
	"hash/fnv"
	"io"
	"io/fs"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	berrors "go.etcd.io/bbolt/errors"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.uber.org/zap"

	"github.com/otel-iforest/iforest/internal/detector"
	"github.com/otel-iforest/iforest/internal/verdict"
)

// Persistence: with `storage` set, the processor saves its models in a
// storage extension (e.g. file_storage) every checkpoint_interval while data
// flows and at shutdown, and restores them at start, so a restart resumes
// detection where it stopped instead of warming up again.
//
// What is saved is a stream: one detector snapshot per detector the
// processor runs (see detector.Snapshot), one after the other. The stream is
// cut into chunks of chunkSize bytes, each stored under its own key, and a
// small manifest (key manifestKey) written last says which chunks make the
// snapshot and what is in it:
//
//	[8]byte magic "\x89IFPROC\n", uint16 version (2), int64 save time (unix ns)
//	uint64 generation (its chunks are in slot generation%2)
//	uint32 chunk size
//	uint32 × 4: chunk keys that exist and chunks that hold data, slot a
//	            then slot b (see chunkKeys)
//	uint32 number of chunks, then the CRC-64/ECMA of each
//	uint32 number of parts, then per part:
//	  uint16 name length, name ("series", or "model/<name>" for entity models)
//	  uint64 signature (entity models: hash of the features and the
//	         entity, which the detector's config check does not cover;
//	         0 otherwise)
//	  uint64 length of its detector snapshot in the stream
//	uint64 CRC-64/ECMA of everything before it
//
// Chunks alternate between two slots of keys: a save writes the slot the
// manifest does not point at, then the manifest, so a crash in the middle of
// a save leaves the previous snapshot whole. Encoding goes one detector
// shard at a time (no shard's lock is held while storage is written) and a
// chunk is stored as soon as it is full, so a save needs one chunk of memory
// and a shard's encoding, not a copy of the whole snapshot; restoring reads
// a chunk at a time too. The version 1 format (the whole snapshot in one
// value under manifestKey) is still read.
//
// A missing or wrong `storage` extension is a configuration error: start
// fails. Anything that goes wrong at run time only costs the saved state:
// a storage that cannot be opened means no persistence for this run.
// Restoring is all or nothing for a damaged part, and per detector for a
// configuration change: a detector whose settings (or, for an entity model,
// features) changed starts fresh while the others resume. Either way the
// processor logs one warning and counts it in
// otelcol_processor_iforest_snapshot_errors, and never fails to start
// because of what it read.
//
// A damaged storage file can make the storage library itself crash (bbolt,
// under file_storage, reads its file through a memory map: a truncated file
// faults). Every call into the extension runs under guard, which turns such
// a crash into an error, and file_storage's file is checked before the
// extension opens it (storefile.go); a damaged file is moved aside and a new
// one started.

const (
	manifestKey = "iforest.snapshot"
	versionOne  = 1 // the whole snapshot in one value
	versionTwo  = 2 // a manifest of chunks
	partSeries  = "series"
	partModel   = "model/"

	// companions is the number of one-byte keys stored after each chunk's
	// key. bbolt (file_storage) puts at least two values in a page of its
	// tree and rewrites the whole page when one of them changes, reading
	// the others through its memory map (which then counts in the
	// process's RSS). With three small keys after each chunk no page holds
	// two chunks, so writing a chunk reads no other.
	companions = 3
)

// chunkSize is the size of a snapshot's chunks; a variable for tests.
var chunkSize = 1 << 20

var (
	envelopeMagic = [8]byte{0x89, 'I', 'F', 'P', 'R', 'O', 'C', '\n'}
	envelopeCRC   = crc64.MakeTable(crc64.ECMA)
	placeholder   = []byte{0}
)

// checkpointer saves and restores the processor's models. The processor
// calls it: start restores and starts a goroutine that saves every
// checkpoint_interval if a batch was processed since the last save;
// shutdown stops it, saves a last time and closes the storage client.
type checkpointer struct {
	p         *iforestProcessor
	id        component.ID // the processor's: names its data in the storage
	chunkSize int

	ext  storage.Extension
	file string // file_storage's file for this processor; "" if not known

	changed atomic.Bool // a batch was processed since the last save
	cancel  context.CancelFunc
	done    chan struct{}

	mu      sync.Mutex     // everything below; one save at a time
	client  storage.Client // nil: no persistence in this run
	failing bool           // the last save failed (log the next failure quietly)
	gen     uint64         // generation of the snapshot the manifest points at
	slots   [2]slotKeys
	lastLen int64 // length of the last snapshot saved or read
}

// slotKeys says which chunk keys of a slot exist and which hold data.
type slotKeys struct{ created, used int }

func newCheckpointer(p *iforestProcessor, id component.ID) *checkpointer {
	return &checkpointer{p: p, id: id, chunkSize: chunkSize}
}

func (c *checkpointer) start(ctx context.Context, host component.Host) error {
	id := *c.p.cfg.Storage
	ext, ok := host.GetExtensions()[id]
	if !ok {
		return fmt.Errorf("storage: extension %q not found; configure it under extensions and list it in service::extensions", id.String())
	}
	se, ok := ext.(storage.Extension)
	if !ok {
		return fmt.Errorf("storage: extension %q is not a storage extension", id.String())
	}
	c.ext, c.file = se, fileStorageFile(ext, c.id)

	c.mu.Lock()
	if c.connect(ctx) {
		c.load(ctx)
		c.feedback(ctx, true)
	}
	c.mu.Unlock()

	loopCtx, cancel := context.WithCancel(context.Background())
	c.cancel, c.done = cancel, make(chan struct{})
	go c.loop(loopCtx, c.p.cfg.CheckpointInterval)
	return nil
}

func (c *checkpointer) loop(ctx context.Context, every time.Duration) {
	defer close(c.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if c.changed.Swap(false) && !c.save(ctx) {
				c.changed.Store(true) // try again next time, or at shutdown
			}
		}
	}
}

func (c *checkpointer) shutdown(ctx context.Context) error {
	if c.cancel == nil {
		return nil // never started
	}
	c.cancel()
	<-c.done
	if c.changed.Swap(false) {
		c.save(ctx)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client == nil {
		return nil
	}
	err := guard(func() error { return c.client.Close(ctx) })
	c.client = nil
	return err
}

func (c *checkpointer) warn(msg string, fields ...zap.Field) {
	c.p.logger.Warn(msg, append([]zap.Field{zap.String("storage", c.p.cfg.Storage.String())}, fields...)...)
	c.p.tel.ProcessorIforestSnapshotErrors.Add(context.Background(), 1)
}

// storeFault is a panic inside the storage extension, recovered. With
// file_storage it is a memory fault reading its memory-mapped file (damaged
// or truncated) or one of bbolt's consistency assertions.
type storeFault struct{ v any }

func (f *storeFault) Error() string {
	if a, ok := f.v.(interface{ Addr() uintptr }); ok {
		return fmt.Sprintf("memory fault at %#x reading the storage's memory-mapped file (%v)", a.Addr(), f.v)
	}
	return fmt.Sprintf("panic in the storage extension: %v", f.v)
}

// guard runs f, a call into the storage extension, and returns a panic in
// it as a *storeFault. Go turns a memory fault into a panic only in a
// goroutine that asked for it (debug.SetPanicOnFault), so guard asks for
// the duration of f. Faults in goroutines the storage library starts itself
// cannot be caught; see storefile.go for what is done about them.
func guard(f func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = &storeFault{r}
		}
	}()
	return f()
}

func isFault(err error) bool {
	var f *storeFault
	return errors.As(err, &f)
}

// storageTrouble says in words what a storage error means and what to do,
// when it is one of the usual ones; "" otherwise.
func storageTrouble(err error) string {
	switch {
	case errors.Is(err, berrors.ErrTimeout), errors.Is(err, errStoreLocked):
		// bbolt's wait for its file lock (file_storage's `timeout`).
		return "its file is locked by another process: is another collector using the same storage directory? Give each collector its own"
	case errors.Is(err, syscall.EROFS):
		return "the storage directory is on a read-only file system: mount it read-write"
	case errors.Is(err, fs.ErrPermission):
		return "no permission to write the storage directory or its file: let the collector's user write them"
	case errors.Is(err, syscall.ENOSPC):
		return "the disk is full"
	case errors.Is(err, storage.ErrStorageFull):
		return "the storage's max_size is reached: a save needs about twice the size of the snapshot (bytes in the last save's debug log)"
	case isFault(err):
		return "the storage extension crashed reading its data: it is damaged"
	}
	return ""
}

// because returns msg with the explanation of err, if there is one.
func because(msg string, err error) string {
	if why := storageTrouble(err); why != "" {
		return msg + ": " + why
	}
	return msg
}

// connect opens the storage client. Without one (after one warning) the
// processor runs without persistence.
func (c *checkpointer) connect(ctx context.Context) bool {
	if c.file != "" {
		if err := checkStoreFile(c.file); err != nil {
			if errors.Is(err, errStoreLocked) {
				c.warn(because("cannot open its storage", err)+"; detection starts fresh and the models will not be saved in this run",
					zap.String("file", c.file), zap.Error(err))
				return false
			}
			if !c.setAside(err, "detection starts fresh (models warm up again)") {
				return false
			}
		}
	}
	err := c.openClient(ctx)
	if err != nil && isFault(err) && c.file != "" {
		// Damage the check above did not see.
		if !c.setAside(err, "detection starts fresh (models warm up again)") {
			return false
		}
		err = c.openClient(ctx)
	}
	if err != nil {
		c.warn(because("cannot open its storage", err)+"; detection starts fresh and the models will not be saved in this run", zap.Error(err))
		return false
	}
	return true
}

func (c *checkpointer) openClient(ctx context.Context) error {
	var client storage.Client
	err := guard(func() (err error) {
		client, err = c.ext.GetClient(ctx, component.KindProcessor, c.id, "")
		return err
	})
	if err == nil {
		c.client = client
	}
	return err
}

// setAside moves the damaged storage file aside (c.file, closed) so that
// the extension starts a new one, with one warning saying what happened and
// then; false (after the warning) if the file cannot be moved.
func (c *checkpointer) setAside(damage error, then string) bool {
	aside, err := moveAside(c.file)
	if err != nil {
		c.warn("the storage file is damaged and could not be moved aside; remove it. Detection starts fresh and the models will not be saved in this run",
			zap.String("file", c.file), zap.NamedError("damage", damage), zap.Error(err))
		return false
	}
	c.warn("the storage file is damaged; moved it aside (delete it when you like) and started a new one: "+then,
		zap.String("file", c.file), zap.String("moved_to", aside), zap.Error(damage))
	return true
}

// recoverFault handles a crash of the storage extension (err) while
// reading the saved models or saving them: the client is not used again.
// With file_storage the damaged file is moved aside and a new one opened, so
// that saving goes on and the next start does not crash again; otherwise
// persistence stops for this run.
func (c *checkpointer) recoverFault(ctx context.Context, err error, reading bool) {
	_ = guard(func() error { return c.client.Close(ctx) })
	c.client, c.gen, c.slots, c.lastLen = nil, 0, [2]slotKeys{}, 0
	if c.file != "" {
		then := "the models in memory are not affected; the next checkpoint saves them in the new file"
		if reading {
			then = "detection starts fresh (models warm up again) where it did not resume yet"
		}
		if !c.setAside(err, then) {
			return
		}
		if oerr := c.openClient(ctx); oerr != nil {
			c.warn(because("cannot open a new storage file", oerr)+"; the models will not be saved in this run", zap.Error(oerr))
		}
		return
	}
	msg := "the storage extension crashed saving the models: its data is damaged. The models will not be saved in this run"
	if reading {
		msg = "the storage extension crashed reading its data: it is damaged. Detection starts fresh (models warm up again) and the models will not be saved in this run"
	}
	c.warn(msg+"; remove this processor's data from the storage (file_storage: the file processor_<type>_<name> in its directory)", zap.Error(err))
}

// part is one detector of the processor, as saved.
type part struct {
	name string
	sig  uint64
	det  *detector.Detector
	// for restoring: how to make a fresh detector and where it goes
	fresh func() *detector.Detector
	set   func(*detector.Detector)
}

func (c *checkpointer) parts() []part {
	p := c.p
	var parts []part
	// In high-cardinality mode no datapoint reaches the per-series models
	// (and its baselines are not saved: they re-learn in a few points).
	if p.grouped == nil {
		parts = append(parts, part{
			name:  partSeries,
			det:   p.det,
			fresh: func() *detector.Detector { return detector.New(p.cfg.detectorConfig(), p.cfg.MaxSeries) },
			set:   func(d *detector.Detector) { p.det = d },
		})
	}
	for _, m := range p.models {
		parts = append(parts, part{
			name: partModel + m.cfg.Name,
			sig:  featuresSignature(m.cfg),
			det:  m.det,
			fresh: func() *detector.Detector {
				return detector.New(m.cfg.detectorConfig(p.cfg.detectorConfig()), p.cfg.MaxSeries)
			},
			set: func(d *detector.Detector) { m.det = d },
		})
	}
	return parts
}

// featuresSignature changes when an entity model's vectors change meaning
// (other metrics, filters or aggregation, or another order) or its keys do
// (other entity attributes).
func featuresSignature(m *ModelConfig) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%+v %+v", m.Features, m.Entity) // maps print sorted
	return h.Sum64() | 1
}

// chunkKey is the key of chunk i of a slot; chunkKeys adds its companions,
// which sort right after it.
func chunkKey(slot, i int) string {
	return fmt.Sprintf("%s.%c%06d", manifestKey, 'a'+slot, i)
}

func chunkKeys(slot, i int) []string {
	k := chunkKey(slot, i)
	keys := []string{k}
	for j := 1; j <= companions; j++ {
		keys = append(keys, fmt.Sprintf("%s.%d", k, j))
	}
	return keys
}

// manifest describes a saved snapshot (version 2), or indexes one saved
// whole (version 1, in legacy).
type manifest struct {
	saved     time.Time
	gen       uint64
	chunkSize int
	slots     [2]slotKeys
	crcs      []uint64
	parts     []partRef
	legacy    []byte
}

// partRef is where a detector's snapshot is in the stream.
type partRef struct {
	name      string
	sig       uint64
	off, size int64
}

// length is the length of the stream, the sum of the parts' snapshots.
func (m *manifest) length() int64 {
	var n int64
	for _, p := range m.parts {
		n += p.size
	}
	return n
}

func (m *manifest) encode() []byte {
	le := binary.LittleEndian
	b := append([]byte(nil), envelopeMagic[:]...)
	b = le.AppendUint16(b, versionTwo)
	b = le.AppendUint64(b, uint64(m.saved.UnixNano()))
	b = le.AppendUint64(b, m.gen)
	b = le.AppendUint32(b, uint32(m.chunkSize))
	for _, s := range m.slots {
		b = le.AppendUint32(b, uint32(s.created))
		b = le.AppendUint32(b, uint32(s.used))
	}
	b = le.AppendUint32(b, uint32(len(m.crcs)))
	for _, c := range m.crcs {
		b = le.AppendUint64(b, c)
	}
	b = le.AppendUint32(b, uint32(len(m.parts)))
	for _, p := range m.parts {
		b = le.AppendUint16(b, uint16(len(p.name)))
		b = append(b, p.name...)
		b = le.AppendUint64(b, p.sig)
		b = le.AppendUint64(b, uint64(p.size))
	}
	return le.AppendUint64(b, crc64.Checksum(b, envelopeCRC))
}

// cursor reads a stored value; after the first short read every read
// returns zero and short is set.
type cursor struct {
	b     []byte
	short bool
}

func (r *cursor) take(n int) []byte {
	if r.short || n > len(r.b) {
		r.short = true
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *cursor) u16() uint16 {
	if v := r.take(2); v != nil {
		return binary.LittleEndian.Uint16(v)
	}
	return 0
}

func (r *cursor) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}

func (r *cursor) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}

const maxChunks = 1 << 20

// decodeManifest reads what is stored under manifestKey: a manifest
// (version 2) or a whole snapshot (version 1).
func decodeManifest(b []byte) (*manifest, error) {
	if len(b) == 0 {
		return nil, errors.New("the stored value is empty")
	}
	if len(b) < 8 || [8]byte(b[:8]) != envelopeMagic {
		return nil, errors.New("not an iforest processor snapshot (bad magic)")
	}
	if len(b) < 8+2+8+8 {
		return nil, fmt.Errorf("truncated (%d bytes)", len(b))
	}
	body := b[:len(b)-8]
	if sum, got := binary.LittleEndian.Uint64(b[len(b)-8:]), crc64.Checksum(body, envelopeCRC); sum != got {
		return nil, fmt.Errorf("checksum mismatch (stored %016x, computed %016x): the stored value is damaged or truncated", sum, got)
	}
	r := &cursor{b: body[8:]}
	version := r.u16()
	m := &manifest{saved: time.Unix(0, int64(r.u64()))}
	switch version {
	case versionOne:
		m.legacy = b
	case versionTwo:
		m.gen = r.u64()
		m.chunkSize = int(r.u32())
		for i := range m.slots {
			m.slots[i] = slotKeys{created: int(r.u32()), used: int(r.u32())}
		}
		n := r.u32()
		if n > maxChunks || int(n)*8 > len(r.b) {
			return nil, fmt.Errorf("%d chunks listed in %d bytes", n, len(r.b))
		}
		for range n {
			m.crcs = append(m.crcs, r.u64())
		}
		if r.short {
			return nil, fmt.Errorf("truncated (%d bytes)", len(b))
		}
	default:
		return nil, fmt.Errorf("format version %d, this build reads versions %d and %d", version, versionOne, versionTwo)
	}
	nparts := r.u32()
	if r.short {
		return nil, fmt.Errorf("truncated (%d bytes)", len(b))
	}
	var off int64
	seen := map[string]bool{}
	for i := range nparts {
		name := string(r.take(int(r.u16())))
		sig, size := r.u64(), r.u64()
		if r.short {
			return nil, fmt.Errorf("part %d truncated", i)
		}
		if seen[name] {
			return nil, fmt.Errorf("part %q appears twice", name)
		}
		seen[name] = true
		if m.legacy != nil {
			// Version 1 stores the snapshot in place.
			if size > uint64(len(r.b)) {
				return nil, fmt.Errorf("part %q truncated", name)
			}
			off = int64(len(b) - 8 - len(r.b))
			r.take(int(size))
		}
		if size > 1<<62 || off+int64(size) < off {
			return nil, fmt.Errorf("part %q is %d bytes", name, size)
		}
		m.parts = append(m.parts, partRef{name: name, sig: sig, off: off, size: int64(size)})
		off += int64(size)
	}
	if r.short || len(r.b) != 0 {
		return nil, fmt.Errorf("%d bytes after the last part", len(r.b))
	}
	if m.legacy != nil {
		return m, nil
	}
	cs := int64(m.chunkSize)
	switch {
	case cs < 1 || cs > 1<<30:
		return nil, fmt.Errorf("chunk size %d", cs)
	case (m.length()+cs-1)/cs != int64(len(m.crcs)):
		return nil, fmt.Errorf("%d chunks of %d bytes for %d bytes of snapshot", len(m.crcs), cs, m.length())
	}
	for i, s := range m.slots {
		if s.used > s.created || s.created > maxChunks || (uint64(i) == m.gen%2 && s.used != len(m.crcs)) {
			return nil, fmt.Errorf("slot %c: %d chunks in %d keys", 'a'+i, s.used, s.created)
		}
	}
	return m, nil
}

// load restores what the storage holds. Whatever goes wrong, the processor
// starts (fresh where it must) after one warning.
func (c *checkpointer) load(ctx context.Context) {
	log := c.p.logger
	start := time.Now()
	var data []byte
	err := guard(func() (err error) {
		data, err = c.client.Get(ctx, manifestKey)
		return err
	})
	if isFault(err) {
		c.recoverFault(ctx, err, true)
		return
	}
	if err != nil {
		c.warn(because("could not read the saved models from storage", err)+"; detection starts fresh (models warm up again)", zap.Error(err))
		return
	}
	if data == nil {
		log.Info("no saved models in storage yet; detection starts fresh", zap.String("storage", c.p.cfg.Storage.String()))
		return
	}
	m, err := decodeManifest(data)
	if err != nil {
		c.warn("the saved models are unreadable; detection starts fresh (models warm up again)",
			zap.Int("bytes", len(data)), zap.Error(err))
		return
	}
	if m.legacy == nil {
		c.gen, c.slots = m.gen, m.slots
	}
	c.lastLen = m.length()
	open := func(pr partRef) io.Reader { return bytes.NewReader(m.legacy[pr.off : pr.off+pr.size]) }
	if m.legacy == nil {
		cr := &chunkReader{c: c, ctx: ctx, m: m, idx: -1}
		open = func(pr partRef) io.Reader {
			cr.pos, cr.end = pr.off, pr.off+pr.size
			return cr
		}
	}
	stored := map[string]partRef{}
	for _, pr := range m.parts {
		stored[pr.name] = pr
	}
	var problems, fresh, restored []string
	series := 0
	for _, pt := range c.parts() {
		pr, ok := stored[pt.name]
		delete(stored, pt.name)
		switch {
		case !ok:
			fresh = append(fresh, pt.name)
			continue
		case pr.sig != pt.sig:
			problems = append(problems, pt.name+": its features or entity changed")
			continue
		}
		d := pt.fresh()
		if err := d.RestoreFrom(open(pr), pr.size); err != nil {
			if isFault(err) {
				c.recoverFault(ctx, err, true)
				return
			}
			problems = append(problems, pt.name+": "+err.Error())
			continue
		}
		pt.set(d)
		verdict.Restored(d.OpenIncidents()) // their ends may be reported
		series += d.Len()
		restored = append(restored, pt.name)
	}
	var dropped []string
	for name := range stored {
		dropped = append(dropped, name)
	}
	fields := []zap.Field{
		zap.String("storage", c.p.cfg.Storage.String()),
		zap.Int("series", series), zap.Strings("restored", restored),
		zap.Time("saved_at", m.saved), zap.Int64("bytes", m.length()), zap.Duration("took", time.Since(start)),
	}
	if len(fresh) > 0 {
		fields = append(fields, zap.Strings("not_in_snapshot", fresh))
	}
	if len(dropped) > 0 {
		fields = append(fields, zap.Strings("no_longer_configured", dropped))
	}
	if len(problems) > 0 {
		c.warn("part of the saved models could not be restored; those start fresh (warm up again): "+strings.Join(problems, "; "),
			fields[1:]...)
	} else {
		log.Info("restored the saved models; detection resumes", fields...)
	}
	if c.file != "" {
		c.reopen(ctx)
	}
}

// reopen closes and opens the storage client again. Reading went through
// file_storage's memory map, which keeps every page it touched in the
// process's RSS until the map goes: as much again as the snapshot.
func (c *checkpointer) reopen(ctx context.Context) {
	if err := guard(func() error { return c.client.Close(ctx) }); err != nil {
		c.p.logger.Debug("closing the storage client after restoring", zap.Error(err))
	}
	c.client = nil
	if err := c.openClient(ctx); err != nil {
		c.warn(because("cannot open its storage again after restoring", err)+"; the models will not be saved in this run", zap.Error(err))
	}
}

// chunkReader reads a part of a version 2 snapshot from its chunks, one
// chunk in memory at a time.
type chunkReader struct {
	c        *checkpointer
	ctx      context.Context
	m        *manifest
	pos, end int64 // the part being read
	idx      int   // index of chunk, -1 before the first
	chunk    []byte
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if r.pos >= r.end {
		return 0, io.EOF
	}
	cs := int64(r.m.chunkSize)
	i := int(r.pos / cs)
	if r.idx != i {
		r.chunk, r.idx = nil, -1
		var v []byte
		key := chunkKey(int(r.m.gen%2), i)
		if err := guard(func() (err error) {
			v, err = r.c.client.Get(r.ctx, key)
			return err
		}); err != nil {
			return 0, err
		}
		want := min(cs, r.m.length()-int64(i)*cs)
		switch {
		case v == nil:
			return 0, fmt.Errorf("chunk %d of %d is missing", i, len(r.m.crcs))
		case int64(len(v)) != want:
			return 0, fmt.Errorf("chunk %d of %d has %d bytes, not %d", i, len(r.m.crcs), len(v), want)
		case crc64.Checksum(v, envelopeCRC) != r.m.crcs[i]:
			return 0, fmt.Errorf("chunk %d of %d is damaged (checksum mismatch)", i, len(r.m.crcs))
		}
		r.chunk, r.idx = v, i
	}
	n := copy(p[:min(int64(len(p)), r.end-r.pos)], r.chunk[r.pos-int64(i)*cs:])
	r.pos += int64(n)
	return n, nil
}

// save writes a snapshot of every model to storage. A failure keeps the
// previous snapshot; it is logged as a warning once per run of failures.
// feedback restores (load) or saves the operators' feedback under its own
// key (feedback.go), guarded like every other call into the storage.
func (c *checkpointer) feedback(ctx context.Context, load bool) {
	if c.client == nil {
		return
	}
	err := guard(func() error {
		if load {
			c.p.loadFeedback(ctx, c.client)
		} else {
			c.p.saveFeedback(ctx, c.client)
		}
		return nil
	})
	if isFault(err) {
		c.recoverFault(ctx, err, load)
	}
}

func (c *checkpointer) save(ctx context.Context) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client == nil {
		return true // no persistence in this run
	}
	start := time.Now()
	m, err := c.write(ctx)
	log := c.p.logger
	if isFault(err) {
		c.recoverFault(ctx, err, false)
		return false
	}
	if err != nil {
		msg := because("could not save the models to storage", err) + "; the previous snapshot stays"
		if c.failing {
			c.p.tel.ProcessorIforestSnapshotErrors.Add(ctx, 1)
			log.Debug(msg, zap.Error(err))
		} else {
			c.warn(msg, zap.Error(err))
		}
		c.failing = true
		return false
	}
	if c.failing {
		log.Info("saving the models to storage works again")
	}
	c.failing = false
	c.feedback(ctx, false)
	log.Debug("saved the models", zap.Int64("bytes", m.length()), zap.Int("chunks", len(m.crcs)),
		zap.Duration("took", time.Since(start)))
	return true
}

// write stores a new snapshot: its chunks in the slot the manifest does not
// point at, then the manifest.
func (c *checkpointer) write(ctx context.Context) (*manifest, error) {
	m := &manifest{gen: c.gen + 1, chunkSize: c.chunkSize, slots: c.slots}
	slot := int(m.gen % 2)
	// Create the chunks' keys before writing any chunk (see ensureChunks).
	expect := c.lastLen + c.lastLen/8
	if err := c.ensureChunks(ctx, slot, int((expect+int64(c.chunkSize)-1)/int64(c.chunkSize))); err != nil {
		return nil, err
	}
	w := &chunkWriter{c: c, ctx: ctx, slot: slot, buf: make([]byte, 0, c.chunkSize)}
	for _, pt := range c.parts() {
		at := w.n
		if err := pt.det.Snapshot(w); err != nil {
			return nil, err
		}
		m.parts = append(m.parts, partRef{name: pt.name, sig: pt.sig, off: at, size: w.n - at})
	}
	if err := w.flush(); err != nil {
		return nil, err
	}
	m.crcs = w.crcs
	// This slot's chunks past the new snapshot hold one two saves old:
	// free their space.
	if used := c.slots[slot].used; used > len(m.crcs) {
		var ops []*storage.Operation
		for i := len(m.crcs); i < used; i++ {
			ops = append(ops, storage.SetOperation(chunkKey(slot, i), placeholder))
		}
		if err := guard(func() error { return c.client.Batch(ctx, ops...) }); err != nil {
			return nil, err
		}
	}
	c.slots[slot].used = len(m.crcs)
	m.slots, m.saved = c.slots, time.Now()
	if err := guard(func() error { return c.client.Set(ctx, manifestKey, m.encode()) }); err != nil {
		return nil, err
	}
	c.gen, c.lastLen = m.gen, m.length()
	return m, nil
}

// ensureChunks creates the keys of a slot's first n chunks (and their
// companions) that do not exist yet, with one-byte values, in one batch.
// Writing a chunk then replaces the value of a key that has its own page in
// bbolt's tree (see companions), where inserting it would put it in a page
// with the chunk before it. More are made than asked, for growth, and at
// least twice as many as there were, so that a first save makes few
// batches.
func (c *checkpointer) ensureChunks(ctx context.Context, slot, n int) error {
	have := c.slots[slot].created
	if n <= have {
		return nil
	}
	n = max(n+n/8, 2*have, 8)
	ops := make([]*storage.Operation, 0, (n-have)*(1+companions))
	for i := have; i < n; i++ {
		for _, k := range chunkKeys(slot, i) {
			ops = append(ops, storage.SetOperation(k, placeholder))
		}
	}
	if err := guard(func() error { return c.client.Batch(ctx, ops...) }); err != nil {
		return err
	}
	c.slots[slot].created = n
	return nil
}

// chunkWriter stores what is written to it in chunks of the slot, each as
// soon as it is full. The storage does not keep the slice it is given
// (file_storage copies it into its file), so one buffer serves every chunk.
type chunkWriter struct {
	c    *checkpointer
	ctx  context.Context
	slot int
	buf  []byte
	crcs []uint64
	n    int64 // bytes written
}

func (w *chunkWriter) Write(b []byte) (int, error) {
	written := 0
	for len(b) > 0 {
		k := copy(w.buf[len(w.buf):cap(w.buf)], b)
		w.buf, b = w.buf[:len(w.buf)+k], b[k:]
		written += k
		w.n += int64(k)
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	i := len(w.crcs)
	if err := w.c.ensureChunks(w.ctx, w.slot, i+1); err != nil {
		return err
	}
	if err := guard(func() error { return w.c.client.Set(w.ctx, chunkKey(w.slot, i), w.buf) }); err != nil {
		return err
	}
	w.crcs = append(w.crcs, crc64.Checksum(w.buf, envelopeCRC))
	w.buf = w.buf[:0]
	return nil
}
