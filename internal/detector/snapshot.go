package detector

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc64"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"

	"github.com/otel-iforest/iforest/internal/forest"
)

// Snapshots: the detector's whole state as bytes, so that a restarted
// process resumes exactly where it stopped (same verdicts, same incident
// ids, no new warm-up).
//
// Format, version 6. Integers and floats are little-endian and fixed-width
// unless marked uvarint.
//
//	header
//	  [8]byte  magic "\x89IFSNAP\n"
//	  uint16   format version (6)
//	  uint16   number of config fields that follow (8)
//	  uint64 × 8: trees, sample_size, window_size, warmup, refit_interval,
//	           seed, adaptive threshold (1 if contamination > 0), lookback
//	records, each a type byte:
//	  1 = a model: uvarint body length, then the body (below)
//	  0 = the end: uint64 number of models, uint64 CRC-64/ECMA of every
//	      byte before it (magic to count). Nothing may follow.
//
//	model body
//	  uint64 key, uint8 kind, uint32 dims, int64 last seen (unix ns)
//	  rate state: int64 start, int64 time, float64 v0, v1, last mean,
//	              offset, scale, uint8 primed
//	  uint32 head, uint32 rows, uint64 learned
//	  float32 × rows*dims: the window ring as stored (row-major)
//	  uint8 n, n bytes: the PCG state (rand.PCG.MarshalBinary)
//	  uint32 next tree, uint32 points to next refit
//	  uint32 trees, then each tree as forest.Tree.AppendBinary writes it
//	  uint8 quantile present; if 1: float32 × 200 bins, float32 inc, grow,
//	        total, uint64 scores added
//	  incident: uint64 recent bits, uint8 open, uint64 id, int64 start,
//	            float64 peak, uint32 quiet, uint32 cooldown
//	  repeats: uint8 open, uint8 previous flagged, uint32 since, float64 peak
//	  uint32 members, each float64 value, int64 time, uint8 set
//	  the long-run state of one-input models (see snapshot_longrun.go)
//
// The config fields are those that shape a model's state; a snapshot taken
// with any of them different is rejected as incompatible, but for trees
// and refit_interval, to which its models are reshaped (see reshape).
// Settings that only change how a verdict is read from the state
// (threshold, contamination's value, incidents, limits) may change across
// a restart.
//
// Restore trusts nothing it reads: the checksum catches accidents, and every
// decoded value is validated as well (a crafted snapshot with a valid
// checksum cannot make the detector panic or read out of range; trees go
// through forest.DecodeTree). It decodes into new maps and swaps them in
// only when the whole snapshot is good, so a failed restore leaves the
// detector as it was.

var snapshotMagic = [8]byte{0x89, 'I', 'F', 'S', 'N', 'A', 'P', '\n'}

const (
	snapshotVersion = 6
	// snapshotV3 to snapshotV5 are read too: they differ only in the time
	// context's days and, before 6, lack the half hours' usual residuals
	// (see snapshot_longrun.go).
	snapshotV3 = 3
	snapshotV4 = 4
	snapshotV5 = 5
	recEnd     = 0
	recSeries  = 1
)

var crcTable = crc64.MakeTable(crc64.ECMA)

// Snapshot errors. Every error of Restore wraps one of them.
var (
	// ErrSnapshotCorrupt: the bytes are not a complete, intact snapshot.
	ErrSnapshotCorrupt = errors.New("snapshot is corrupt")
	// ErrSnapshotIncompatible: an intact snapshot of another format version
	// or another model configuration.
	ErrSnapshotIncompatible = errors.New("snapshot is incompatible")
)

// configField is one setting recorded in a snapshot's header.
type configField struct {
	name  string // the processor's YAML key
	value uint64
	flag  bool // value is 0 or 1, shown as false/true
}

func (f configField) show(v uint64) string {
	if f.flag {
		return fmt.Sprint(v == 1)
	}
	return fmt.Sprint(v)
}

// fingerprint lists the settings a snapshot's state depends on. Append new
// fields at the end (older snapshots then fail the field count check).
func fingerprint(c *Config) []configField {
	adaptive := uint64(0)
	if c.Contamination > 0 {
		adaptive = 1
	}
	return []configField{
		{"trees", uint64(c.Trees), false},
		{"sample_size", uint64(c.SampleSize), false},
		{"window_size", uint64(c.WindowSize), false},
		{"warmup", uint64(c.Warmup), false},
		{"refit_interval", uint64(c.RefitInterval), false},
		{"seed", c.Seed, false},
		{"contamination > 0", adaptive, true},
		{"lookback", uint64(c.Lookback), false},
	}
}

// Snapshot writes the state of every model to w. Shards are copied one at
// a time under their own lock, so concurrent Observe calls wait at most for
// one shard to be encoded (never for w). Each model is captured whole; the
// snapshot as a whole is not one instant of the detector (a model of one
// shard may have learned a point that a model of an earlier shard already
// copied had not seen), which does not matter for resuming.
func (d *Detector) Snapshot(w io.Writer) error {
	crc := crc64.New(crcTable)
	out := io.MultiWriter(w, crc)
	buf := append([]byte(nil), snapshotMagic[:]...)
	buf = binary.LittleEndian.AppendUint16(buf, snapshotVersion)
	fp := fingerprint(&d.cfg)
	buf = binary.LittleEndian.AppendUint16(buf, uint16(len(fp)))
	for _, f := range fp {
		buf = binary.LittleEndian.AppendUint64(buf, f.value)
	}
	var count uint64
	var body []byte
	for i := range d.shards {
		sh := &d.shards[i]
		sh.mu.Lock()
		for _, k := range slices.Sorted(maps.Keys(sh.series)) {
			body = appendSeries(body[:0], k, sh.series[k])
			buf = append(buf, recSeries)
			buf = binary.AppendUvarint(buf, uint64(len(body)))
			buf = append(buf, body...)
			count++
		}
		sh.mu.Unlock()
		if _, err := out.Write(buf); err != nil {
			return fmt.Errorf("writing snapshot: %w", err)
		}
		buf = buf[:0]
	}
	buf = append(buf, recEnd)
	buf = binary.LittleEndian.AppendUint64(buf, count)
	if _, err := out.Write(buf); err != nil {
		return fmt.Errorf("writing snapshot: %w", err)
	}
	if _, err := w.Write(binary.LittleEndian.AppendUint64(nil, crc.Sum64())); err != nil {
		return fmt.Errorf("writing snapshot: %w", err)
	}
	return nil
}

func appendSeries(b []byte, key uint64, s *series) []byte {
	le := binary.LittleEndian
	f64 := func(b []byte, v float64) []byte { return le.AppendUint64(b, math.Float64bits(v)) }
	b = le.AppendUint64(b, key)
	b = append(b, byte(s.kind))
	b = le.AppendUint32(b, uint32(s.dims))
	b = le.AppendUint64(b, uint64(s.lastSeen))

	r := &s.rate
	b = le.AppendUint64(b, uint64(r.start))
	b = le.AppendUint64(b, uint64(r.time))
	b = f64(b, r.v0)
	b = f64(b, r.v1)
	b = f64(b, r.lastMean)
	b = f64(b, r.offset)
	b = f64(b, r.scale)
	b = append(b, b2byte(r.primed))

	b = le.AppendUint32(b, uint32(s.head))
	b = le.AppendUint32(b, uint32(s.rows))
	b = le.AppendUint64(b, uint64(s.learned))
	for _, v := range s.win[:s.rows*s.dims] {
		b = le.AppendUint32(b, math.Float32bits(v))
	}

	pcg, _ := s.pcg.MarshalBinary() // never fails
	b = append(b, byte(len(pcg)))
	b = append(b, pcg...)

	b = le.AppendUint32(b, uint32(s.nextTree))
	b = le.AppendUint32(b, uint32(s.toRefit))
	if s.forest == nil {
		b = le.AppendUint32(b, 0)
	} else {
		b = le.AppendUint32(b, uint32(s.forest.Len()))
		for i := range s.forest.Len() {
			b = s.forest.AppendTree(b, i)
		}
	}

	if q := s.quant; q == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		for _, v := range q.bins {
			b = le.AppendUint32(b, math.Float32bits(v))
		}
		for _, v := range []float32{q.inc, q.grow, q.total} {
			b = le.AppendUint32(b, math.Float32bits(v))
		}
		b = le.AppendUint64(b, uint64(q.n))
	}

	in := &s.inc
	b = le.AppendUint64(b, in.recent)
	b = append(b, b2byte(in.open))
	b = le.AppendUint64(b, in.id)
	b = le.AppendUint64(b, uint64(in.start))
	b = f64(b, in.peak)
	b = le.AppendUint32(b, uint32(in.quiet))
	b = le.AppendUint32(b, uint32(in.cooldown))

	rp := &s.rep
	b = append(b, b2byte(rp.open), b2byte(rp.prev))
	b = le.AppendUint32(b, uint32(rp.since))
	b = f64(b, rp.peak)

	b = le.AppendUint32(b, uint32(len(s.members)))
	for _, m := range s.members {
		b = f64(b, m.value)
		b = le.AppendUint64(b, uint64(m.time))
		b = append(b, b2byte(m.set))
	}
	return appendLongRun(b, s.lr)
}

func b2byte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// Restore replaces the detector's state with the snapshot read from r (all
// of r). On any error the detector is left unchanged and the error wraps
// ErrSnapshotCorrupt or ErrSnapshotIncompatible. Models beyond the
// detector's series limit are dropped, least recently seen first.
func (d *Detector) Restore(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("reading snapshot: %w", err)
	}
	return d.RestoreBytes(b)
}

// RestoreBytes is Restore from a byte slice; b is not retained.
func (d *Detector) RestoreBytes(b []byte) error {
	return d.RestoreFrom(bytes.NewReader(b), int64(len(b)))
}

// RestoreFrom is Restore from the next size bytes of r, decoded as they are
// read: the caller need not hold the snapshot whole (the processor reads it
// from storage a chunk at a time). An error of r other than a short read is
// returned wrapped, not as ErrSnapshotCorrupt.
func (d *Detector) RestoreFrom(r io.Reader, size int64) error {
	decoded, err := d.decodeSnapshot(r, size)
	if err != nil {
		return err
	}
	if lim := int(d.limit.max); lim > 0 {
		trimOldest(decoded, lim)
	}
	for i := range d.shards {
		sh := &d.shards[i]
		m := decoded[i]
		sh.mu.Lock()
		d.created.Add(int64(len(m)) - int64(len(sh.series)))
		d.limit.held.Add(int64(len(m)) - int64(len(sh.series)))
		for _, s := range sh.series {
			d.bytes.Add(-int64(s.bytes))
		}
		sh.series, sh.unknown, sh.known, sh.intervals = m, recency{}, recency{}, intervals{}
		// Restored models are seen again in their saved order, their
		// intervals unknown until they report; they count as seen when
		// the shard next sees data (see settle).
		for _, s := range byLastSeen(slices.Collect(maps.Values(m))) {
			s.interval = -1
			sh.unknown.pushFront(s)
			d.resized(s)
		}
		sh.restored = len(m) > 0
		sh.mu.Unlock()
	}
	return nil
}

// trimOldest keeps the n most recently seen models of the shards' maps.
func trimOldest(shards []map[uint64]*series, n int) {
	var all []*series
	for _, m := range shards {
		all = append(all, slices.Collect(maps.Values(m))...)
	}
	if len(all) <= n {
		return
	}
	for _, s := range byLastSeen(all)[:len(all)-n] {
		delete(shards[s.key%uint64(len(shards))], s.key)
	}
}

// byLastSeen sorts models least recently seen first (ties by key).
func byLastSeen(all []*series) []*series {
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if a.lastSeen != b.lastSeen {
			return a.lastSeen < b.lastSeen
		}
		return a.key < b.key
	})
	return all
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrSnapshotCorrupt}, args...)...)
}

const (
	headerFixed = len(snapshotMagic) + 2 + 2
	trailerLen  = 1 + 8 + 8
)

// decodeSnapshot reads a snapshot of size bytes from r into new maps, one
// per shard. The checksum can only be checked at the end of a stream, so on
// any error the rest is read and checked: bytes that do not match their
// checksum are reported as such, whatever else looked wrong in them.
func (d *Detector) decodeSnapshot(r io.Reader, size int64) ([]map[uint64]*series, error) {
	le := binary.LittleEndian
	if size <= 0 {
		return nil, corrupt("empty")
	}
	head := make([]byte, min(size, int64(headerFixed)))
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, readError(err)
	}
	if len(head) < len(snapshotMagic) || [8]byte(head[:8]) != snapshotMagic {
		return nil, corrupt("not an iforest detector snapshot (bad magic)")
	}
	if len(head) < headerFixed {
		return nil, corrupt("truncated header (%d bytes)", size)
	}
	version := le.Uint16(head[8:])
	if version < snapshotV3 || version > snapshotVersion {
		return nil, fmt.Errorf("%w: format version %d, this build reads versions %d to %d", ErrSnapshotIncompatible, version, snapshotV3, snapshotVersion)
	}
	nfields := int(le.Uint16(head[10:]))
	if size < int64(headerFixed+8*nfields+trailerLen) {
		return nil, corrupt("truncated (%d bytes)", size)
	}
	fields := make([]byte, 8*nfields)
	if _, err := io.ReadFull(r, fields); err != nil {
		return nil, readError(err)
	}
	crc := crc64.New(crcTable)
	crc.Write(head)
	crc.Write(fields)
	body := size - int64(headerFixed+8*nfields) - 8
	st := &stream{r: r, br: bufio.NewReaderSize(io.TeeReader(io.LimitReader(r, body), crc), 64<<10), crc: crc, left: body}

	want := fingerprint(&d.cfg)
	if nfields != len(want) {
		return nil, st.fail(fmt.Errorf("%w: %d config fields, this build writes %d", ErrSnapshotIncompatible, nfields, len(want)))
	}
	var diffs []string
	was := forestShape{trees: d.cfg.Trees, refit: d.cfg.RefitInterval}
	for i, f := range want {
		v := le.Uint64(fields[8*i:])
		switch {
		case v == f.value:
		case f.name == "trees":
			was.trees = int(min(v, maxSnapshotTrees+1))
		case f.name == "refit_interval":
			was.refit = int(min(v, math.MaxInt32))
		default:
			diffs = append(diffs, fmt.Sprintf("%s was %s, now %s", f.name, f.show(v), f.show(f.value)))
		}
	}
	if len(diffs) > 0 {
		return nil, st.fail(fmt.Errorf("%w: taken with a different model configuration: %s", ErrSnapshotIncompatible, strings.Join(diffs, ", ")))
	}
	if was.trees < 1 || was.trees > max(maxSnapshotTrees, d.cfg.Trees) || was.refit < 1 {
		return nil, st.fail(corrupt("trees %d, refit_interval %d", was.trees, was.refit))
	}

	out := make([]map[uint64]*series, len(d.shards))
	for i := range out {
		out[i] = make(map[uint64]*series)
	}
	var count uint64
	var rec []byte
	for {
		typ, err := st.ReadByte()
		if err != nil {
			return nil, st.fail(corrupt("no end record"))
		}
		if typ == recEnd {
			break
		}
		if typ != recSeries {
			return nil, st.fail(corrupt("unknown record type %d after %d models", typ, count))
		}
		n, err := binary.ReadUvarint(st)
		if err != nil || n > uint64(st.left) {
			return nil, st.fail(corrupt("bad length of model record %d", count))
		}
		rec = slices.Grow(rec[:0], int(n))[:n]
		if err := st.read(rec); err != nil {
			return nil, st.fail(err)
		}
		key, s, err := d.decodeSeries(rec, version, was)
		if err != nil {
			return nil, st.fail(fmt.Errorf("model record %d: %w", count, err))
		}
		m := out[key%uint64(len(out))]
		if m[key] != nil {
			return nil, st.fail(corrupt("model %016x appears twice", key))
		}
		m[key] = s
		count++
	}
	if st.left != 8 {
		return nil, st.fail(corrupt("%d bytes where the end record's count should be", st.left))
	}
	var c [8]byte
	if err := st.read(c[:]); err != nil {
		return nil, st.fail(err)
	}
	if err := st.checksum(); err != nil {
		return nil, err
	}
	if got := le.Uint64(c[:]); got != count {
		return nil, corrupt("end record counts %d models, found %d", got, count)
	}
	return out, nil
}

// stream reads a snapshot's records (everything between the header and the
// checksum) from r, hashing what it reads, and reads the checksum after them.
type stream struct {
	r       io.Reader     // the snapshot; the checksum follows the records
	br      *bufio.Reader // the records of r, hashed into crc as they are read
	crc     hash.Hash64
	left    int64 // bytes of records not read yet
	readErr error // an error of r (not a short read)
}

func (s *stream) ReadByte() (byte, error) {
	if s.left <= 0 {
		return 0, io.EOF
	}
	b, err := s.br.ReadByte()
	if err != nil {
		return 0, s.failed(err)
	}
	s.left--
	return b, nil
}

// read fills b from the records.
func (s *stream) read(b []byte) error {
	if int64(len(b)) > s.left {
		return corrupt("model record truncated")
	}
	if _, err := io.ReadFull(s.br, b); err != nil {
		return s.failed(err)
	}
	s.left -= int64(len(b))
	return nil
}

func (s *stream) failed(err error) error {
	err = readError(err)
	if !errors.Is(err, ErrSnapshotCorrupt) && s.readErr == nil {
		s.readErr = err
	}
	return err
}

// checksum reads the rest of the records and the checksum after them, and
// compares.
func (s *stream) checksum() error {
	if s.readErr != nil {
		return s.readErr
	}
	if _, err := io.Copy(io.Discard, s.br); err != nil {
		return s.failed(err)
	}
	var b [8]byte
	if _, err := io.ReadFull(s.r, b[:]); err != nil {
		return s.failed(err)
	}
	if sum, got := binary.LittleEndian.Uint64(b[:]), s.crc.Sum64(); sum != got {
		return corrupt("checksum mismatch (stored %016x, computed %016x): the data is damaged or truncated", sum, got)
	}
	return nil
}

// fail returns err, or the checksum's complaint if the data is damaged.
func (s *stream) fail(err error) error {
	if cerr := s.checksum(); cerr != nil {
		return cerr
	}
	return err
}

// readError is err of reading a snapshot: a short read is a truncated
// snapshot, anything else the reader's own trouble.
func readError(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return corrupt("truncated")
	}
	return fmt.Errorf("reading snapshot: %w", err)
}

// reader is a cursor over one record; after the first short read every
// read returns zero and err stays set.
type reader struct {
	b       []byte
	err     error
	version uint16 // the snapshot's format version
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = corrupt("model record truncated")
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() byte {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if v := r.take(2); v != nil {
		return binary.LittleEndian.Uint16(v)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}

func (r *reader) f32() float32 { return math.Float32frombits(r.u32()) }
func (r *reader) f64() float64 { return math.Float64frombits(r.u64()) }

func (r *reader) flag(what string) bool {
	v := r.u8()
	if v > 1 && r.err == nil {
		r.err = corrupt("%s: %d is not a boolean", what, v)
	}
	return v == 1
}

// decodeSeries decodes and validates one model record.
func (d *Detector) decodeSeries(b []byte, version uint16, was forestShape) (uint64, *series, error) {
	cfg := &d.cfg
	r := &reader{b: b, version: version}
	key := r.u64()
	kind := Kind(r.u8())
	dims := r.u32()
	if r.err != nil {
		return 0, nil, r.err
	}
	if kind > Vector {
		return 0, nil, corrupt("unknown kind %d", kind)
	}
	if kind == Vector {
		if dims < 1 || dims > forest.MaxFeatures {
			return 0, nil, corrupt("multivariate model with %d inputs", dims)
		}
	} else if int(dims) != kind.dims() {
		return 0, nil, corrupt("kind %d with %d inputs", kind, dims)
	}
	s := &series{kind: kind, dims: int(dims), fdims: d.forestDims(kind, int(dims)), key: key}
	s.lastSeen = int64(r.u64())

	rs := &s.rate
	rs.start = int64(r.u64())
	rs.time = int64(r.u64())
	rs.v0, rs.v1, rs.lastMean, rs.offset, rs.scale = r.f64(), r.f64(), r.f64(), r.f64(), r.f64()
	rs.primed = r.flag("rate primed")

	head, rows, learned := r.u32(), r.u32(), r.u64()
	if r.err != nil {
		return 0, nil, r.err
	}
	w := uint32(cfg.WindowSize)
	switch {
	case rows > w:
		return 0, nil, corrupt("window holds %d rows, window_size is %d", rows, w)
	case rows < w && head != rows, rows == w && head >= w:
		return 0, nil, corrupt("window head %d with %d of %d rows", head, rows, w)
	case learned < uint64(rows) || learned > 1<<62:
		return 0, nil, corrupt("%d points learned with %d in the window", learned, rows)
	}
	s.head, s.rows, s.learned = int(head), int(rows), int(learned)
	raw := r.take(int(rows) * int(dims) * 4)
	if r.err != nil {
		return 0, nil, r.err
	}
	// Exactly sized: learn grows a window that is not full yet (and a
	// crafted snapshot cannot make us allocate more than it holds).
	capRows := int(rows)
	s.win = make([]float32, int(rows)*int(dims), capRows*int(dims))
	for i := range s.win {
		v := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return 0, nil, corrupt("window value %v", v)
		}
		s.win[i] = v
	}

	pcg := r.take(int(r.u8()))
	if r.err != nil {
		return 0, nil, r.err
	}
	if err := s.pcg.UnmarshalBinary(pcg); err != nil {
		return 0, nil, corrupt("random state: %v", err)
	}
	s.rng = rand.New(&s.pcg)

	next, toRefit, ntrees := r.u32(), r.u32(), r.u32()
	if r.err != nil {
		return 0, nil, r.err
	}
	switch {
	case ntrees > uint32(was.trees):
		return 0, nil, corrupt("%d trees, trees is %d", ntrees, was.trees)
	case ntrees > 0 && rows < minTrain:
		return 0, nil, corrupt("%d trees with only %d rows", ntrees, rows)
	case next >= uint32(was.trees) || toRefit >= uint32(was.refit):
		return 0, nil, corrupt("refit position %d/%d", next, toRefit)
	case ntrees < uint32(was.trees) && (next != 0 || toRefit != 0):
		return 0, nil, corrupt("refit position %d/%d while growing", next, toRefit)
	}
	s.nextTree, s.toRefit = int(next), int(toRefit)
	if ntrees > 0 {
		trees := make([]*forest.Tree, 0, ntrees)
		for i := range ntrees {
			if r.err != nil {
				return 0, nil, r.err
			}
			t, n, err := forest.DecodeTree(r.b, s.fdims)
			if err != nil {
				return 0, nil, fmt.Errorf("%w: tree %d: %w", ErrSnapshotCorrupt, i, err)
			}
			if t.SampleSize() > cfg.SampleSize || t.SampleSize() > int(rows) {
				return 0, nil, corrupt("tree %d built on %d points (sample_size %d, %d rows)", i, t.SampleSize(), cfg.SampleSize, rows)
			}
			r.take(n)
			trees = append(trees, t)
		}
		if was != (forestShape{cfg.Trees, cfg.RefitInterval}) {
			trees = s.reshape(trees, cfg)
		}
		s.forest = forest.New(s.fdims, trees) // cannot panic: DecodeTree checked the features
	}

	switch r.u8() {
	case 0:
		if cfg.Contamination > 0 {
			return 0, nil, corrupt("no score quantile with contamination set")
		}
	case 1:
		if cfg.Contamination == 0 {
			return 0, nil, corrupt("score quantile without contamination")
		}
		q := newScoreQuantile(cfg.WindowSize)
		grow := q.grow
		for i := range q.bins {
			q.bins[i] = r.f32()
		}
		q.inc, q.grow, q.total = r.f32(), r.f32(), r.f32()
		n := r.u64()
		if r.err != nil {
			return 0, nil, r.err
		}
		ok := q.grow == grow && q.inc >= 1 && q.inc <= 1e30*grow && q.total >= 0 && q.total < math.MaxFloat32 && n < 1<<62
		for _, v := range q.bins {
			ok = ok && v >= 0 && v < math.MaxFloat32
		}
		if !ok {
			return 0, nil, corrupt("score quantile out of range")
		}
		q.n = int(n)
		s.quant = q
	default:
		if r.err == nil {
			return 0, nil, corrupt("bad score quantile flag")
		}
	}

	in := &s.inc
	in.recent = r.u64()
	if ow := cfg.Incidents.OpenWindow; ow < 64 {
		in.recent &= 1<<ow - 1 // open_window may have changed
	}
	in.open = r.flag("incident open")
	in.id = r.u64()
	in.start = int64(r.u64())
	in.peak = r.f64()
	quiet, cooldown := r.u32(), r.u32()
	if quiet > math.MaxInt32 || cooldown > math.MaxInt32 {
		return 0, nil, corrupt("incident counters %d/%d", quiet, cooldown)
	}
	in.quiet, in.cooldown = int(quiet), int(cooldown)

	rp := &s.rep
	rp.open, rp.prev = r.flag("repeats open"), r.flag("repeats previous")
	since := r.u32()
	rp.peak = r.f64()
	if since > math.MaxInt32 || math.IsNaN(rp.peak) {
		return 0, nil, corrupt("repeats state %d/%v", since, rp.peak)
	}
	rp.since = int32(since)
	if s.hasRange() {
		s.rescanRange() // a function of the window, see beyond.go
	}

	nm := r.u32()
	if r.err != nil {
		return 0, nil, r.err
	}
	if (kind == Vector && nm != dims) || (kind != Vector && nm != 0) {
		return 0, nil, corrupt("%d members for a model with %d inputs", nm, dims)
	}
	if nm > 0 {
		if uint64(len(r.b)) < 17*uint64(nm) {
			return 0, nil, corrupt("model record truncated")
		}
		s.members = make([]member, nm)
		for i := range s.members {
			m := &s.members[i]
			m.value, m.time, m.set = r.f64(), int64(r.u64()), r.flag("member set")
		}
	}
	if r.err != nil {
		return 0, nil, r.err
	}
	lr, err := decodeLongRun(r, d.hasLongRun(kind, int(dims)))
	if err != nil {
		return 0, nil, err
	}
	s.lr = lr
	if len(r.b) != 0 {
		return 0, nil, corrupt("%d unread bytes at the end of a model record", len(r.b))
	}
	return key, s, nil
}

// maxSnapshotTrees bounds the trees a snapshot's models may have, unless
// the detector's own setting is larger: what the processor's
// configuration allows.
const maxSnapshotTrees = 1000

// forestShape is the forest settings a snapshot was taken with, which a
// restore adapts its models to (see reshape).
type forestShape struct{ trees, refit int }

// reshape adapts a restored model's trees, in slab index order, to cfg's
// trees and refit_interval: the model keeps its newest trees, oldest
// first, and a forest with fewer trees than cfg wants grows as a new
// model's does. A change of either setting (or of their defaults) then
// does not cost the models their learning.
func (s *series) reshape(trees []*forest.Tree, cfg *Config) []*forest.Tree {
	// Tree nextTree is the oldest once the forest is full; a growing
	// forest's are in the order they were added.
	aged := append(trees[s.nextTree:len(trees):len(trees)], trees[:s.nextTree]...)
	aged = aged[max(len(aged)-cfg.Trees, 0):]
	s.nextTree = 0
	if len(aged) < cfg.Trees {
		s.toRefit = 0
	} else {
		s.toRefit = min(s.toRefit, cfg.RefitInterval-1)
	}
	return aged
}
