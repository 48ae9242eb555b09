package iforestprocessor

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc64"
	"hash/fnv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/zap"

	"github.com/otel-iforest/iforest/internal/detector"
	"github.com/otel-iforest/iforest/internal/verdict"
)

// Persistence: with `storage` set, the processor saves its models in a
// storage extension (e.g. file_storage) every checkpoint_interval while data
// flows and at shutdown, and restores them at start, so a restart resumes
// detection where it stopped instead of warming up again.
//
// The stored value (key snapshotKey) is an envelope around one detector
// snapshot per detector the processor runs (see detector.Snapshot):
//
//	[8]byte magic "\x89IFPROC\n", uint16 version (1), int64 save time (unix ns)
//	uint32 number of parts, then per part:
//	  uint16 name length, name ("series", or "model/<name>" for entity models)
//	  uint64 signature (entity models: hash of the features and the
//	         entity, which the detector's config check does not cover;
//	         0 otherwise)
//	  uint64 length, detector snapshot
//	uint64 CRC-64/ECMA of everything before it
//
// A missing or wrong `storage` extension is a configuration error: Start
// fails. Anything that goes wrong at run time only costs the saved state:
// a storage that cannot be opened means no persistence for this run.
// Restoring is all or nothing for a damaged value, and per detector for a
// configuration change: a detector whose settings (or, for an entity model,
// features) changed starts fresh while the others resume. Either way the
// processor logs one warning and counts it in
// otelcol_processor_iforest_snapshot_errors, and never fails to start
// because of what it read.

const (
	snapshotKey     = "iforest.snapshot"
	envelopeVersion = 1
	partSeries      = "series"
	partModel       = "model/"
)

var (
	envelopeMagic = [8]byte{0x89, 'I', 'F', 'P', 'R', 'O', 'C', '\n'}
	envelopeCRC   = crc64.MakeTable(crc64.ECMA)
)

func (c *Config) validatePersistence() error {
	if c.CheckpointInterval < 0 || (c.Storage != nil && c.CheckpointInterval == 0) {
		return fmt.Errorf("checkpoint_interval: must be positive, got %v", c.CheckpointInterval)
	}
	return nil
}

// persister saves and restores the processor's models. It wraps the
// processor's lifecycle: start restores, a goroutine saves every
// checkpoint_interval if a batch was processed since the last save, and
// shutdown stops it, saves a last time and closes the storage client.
type persister struct {
	p  *iforestProcessor
	id component.ID

	client  storage.Client
	changed atomic.Bool // a batch was processed since the last save
	cancel  context.CancelFunc
	done    chan struct{}

	mu       sync.Mutex // one save at a time
	failing  bool       // the last save failed (log the next failure quietly)
	lastSize int
}

func newPersister(p *iforestProcessor, id component.ID) *persister {
	return &persister{p: p, id: id}
}

func (ps *persister) process(ctx context.Context, md pmetric.Metrics) (pmetric.Metrics, error) {
	md, err := ps.p.processMetrics(ctx, md)
	// After the batch: a save that has already taken the flag sees this
	// batch's state, or the flag stays set for the next one.
	ps.changed.Store(true)
	return md, err
}

func (ps *persister) start(ctx context.Context, host component.Host) error {
	cfg := ps.p.cfg
	if cfg.Storage == nil {
		return nil
	}
	ext, ok := host.GetExtensions()[*cfg.Storage]
	if !ok {
		return fmt.Errorf("storage: extension %q not found; configure it under extensions and list it in service::extensions", cfg.Storage.String())
	}
	se, ok := ext.(storage.Extension)
	if !ok {
		return fmt.Errorf("storage: extension %q is not a storage extension", cfg.Storage.String())
	}
	client, err := se.GetClient(ctx, component.KindProcessor, ps.id, "")
	if err != nil {
		// E.g. file_storage's database file is damaged or locked by another
		// process. Fail open: the collector runs, without persistence.
		ps.p.logger.Warn("iforest: cannot open its storage; detection starts fresh and the models will not be saved in this run",
			zap.String("storage", cfg.Storage.String()), zap.Error(err))
		ps.p.tel.ProcessorIforestSnapshotErrors.Add(ctx, 1)
		return nil
	}
	ps.client = client
	ps.load(ctx)
	ps.p.loadFeedback(ctx, client) // feedback.go

	loopCtx, cancel := context.WithCancel(context.Background())
	ps.cancel, ps.done = cancel, make(chan struct{})
	go ps.loop(loopCtx, cfg.CheckpointInterval)
	return nil
}

func (ps *persister) loop(ctx context.Context, every time.Duration) {
	defer close(ps.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if ps.changed.Swap(false) && !ps.save(ctx) {
				ps.changed.Store(true) // try again next time, or at shutdown
			}
		}
	}
}

func (ps *persister) shutdown(ctx context.Context) error {
	var err error
	if ps.client != nil {
		ps.cancel()
		<-ps.done
		if ps.changed.Swap(false) {
			ps.save(ctx)
		}
		err = ps.client.Close(ctx)
		ps.client = nil
	}
	return errors.Join(err, ps.p.shutdown(ctx))
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

func (ps *persister) parts() []part {
	p := ps.p
	var parts []part
	// In high-cardinality mode no datapoint reaches the per-series models
	// (and the shared baselines are not saved: they re-learn in a few points).
	if p.shared == nil {
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

func (ps *persister) encode() ([]byte, error) {
	parts := ps.parts()
	buf := bytes.NewBuffer(make([]byte, 0, ps.lastSize+ps.lastSize/8+4096))
	le := binary.LittleEndian
	b := append([]byte(nil), envelopeMagic[:]...)
	b = le.AppendUint16(b, envelopeVersion)
	b = le.AppendUint64(b, uint64(time.Now().UnixNano()))
	b = le.AppendUint32(b, uint32(len(parts)))
	buf.Write(b)
	for _, pt := range parts {
		b = le.AppendUint16(b[:0], uint16(len(pt.name)))
		b = append(b, pt.name...)
		b = le.AppendUint64(b, pt.sig)
		buf.Write(b)
		at := buf.Len()
		buf.Write(make([]byte, 8)) // length, filled in below
		if err := pt.det.Snapshot(buf); err != nil {
			return nil, err
		}
		le.PutUint64(buf.Bytes()[at:], uint64(buf.Len()-at-8))
	}
	buf.Write(le.AppendUint64(nil, crc64.Checksum(buf.Bytes(), envelopeCRC)))
	ps.lastSize = buf.Len() // the next buffer starts about this large
	return buf.Bytes(), nil
}

type savedPart struct {
	sig  uint64
	data []byte
}

func decodeEnvelope(b []byte) (time.Time, map[string]savedPart, error) {
	le := binary.LittleEndian
	const head = 8 + 2 + 8 + 4
	if len(b) == 0 {
		return time.Time{}, nil, errors.New("the stored value is empty")
	}
	if len(b) < 8 || [8]byte(b[:8]) != envelopeMagic {
		return time.Time{}, nil, errors.New("not an iforest processor snapshot (bad magic)")
	}
	if len(b) < head+8 {
		return time.Time{}, nil, fmt.Errorf("truncated (%d bytes)", len(b))
	}
	if v := le.Uint16(b[8:]); v != envelopeVersion {
		return time.Time{}, nil, fmt.Errorf("format version %d, this build reads version %d", v, envelopeVersion)
	}
	body := b[:len(b)-8]
	if sum, got := le.Uint64(b[len(b)-8:]), crc64.Checksum(body, envelopeCRC); sum != got {
		return time.Time{}, nil, fmt.Errorf("checksum mismatch (stored %016x, computed %016x): the stored value is damaged or truncated", sum, got)
	}
	saved := time.Unix(0, int64(le.Uint64(b[10:])))
	n := le.Uint32(b[18:])
	rest := body[head:]
	parts := map[string]savedPart{}
	for i := range n {
		if len(rest) < 2 {
			return saved, nil, fmt.Errorf("part %d truncated", i)
		}
		nl := int(le.Uint16(rest))
		if len(rest) < 2+nl+16 {
			return saved, nil, fmt.Errorf("part %d truncated", i)
		}
		name := string(rest[2 : 2+nl])
		sig := le.Uint64(rest[2+nl:])
		dl := le.Uint64(rest[2+nl+8:])
		rest = rest[2+nl+16:]
		if dl > uint64(len(rest)) {
			return saved, nil, fmt.Errorf("part %q truncated", name)
		}
		if _, dup := parts[name]; dup {
			return saved, nil, fmt.Errorf("part %q appears twice", name)
		}
		parts[name] = savedPart{sig: sig, data: rest[:dl]}
		rest = rest[dl:]
	}
	if len(rest) != 0 {
		return saved, nil, fmt.Errorf("%d bytes after the last part", len(rest))
	}
	return saved, parts, nil
}

// load restores what the storage holds. Whatever goes wrong, the processor
// starts (fresh where it must) after one warning.
func (ps *persister) load(ctx context.Context) {
	log := ps.p.logger
	warn := func(msg string, fields ...zap.Field) {
		log.Warn(msg, fields...)
		ps.p.tel.ProcessorIforestSnapshotErrors.Add(ctx, 1)
	}
	start := time.Now()
	data, err := ps.client.Get(ctx, snapshotKey)
	if err != nil {
		warn("iforest: could not read the saved models from storage; detection starts fresh (models warm up again)",
			zap.String("storage", ps.p.cfg.Storage.String()), zap.Error(err))
		return
	}
	if data == nil {
		log.Info("iforest: no saved models in storage yet; detection starts fresh", zap.String("storage", ps.p.cfg.Storage.String()))
		return
	}
	saved, stored, err := decodeEnvelope(data)
	if err != nil {
		warn("iforest: the saved models are unreadable; detection starts fresh (models warm up again)",
			zap.String("storage", ps.p.cfg.Storage.String()), zap.Int("bytes", len(data)), zap.Error(err))
		return
	}
	var problems, fresh, restored []string
	series := 0
	for _, pt := range ps.parts() {
		sp, ok := stored[pt.name]
		delete(stored, pt.name)
		switch {
		case !ok:
			fresh = append(fresh, pt.name)
			continue
		case sp.sig != pt.sig:
			problems = append(problems, pt.name+": its features or entity changed")
			continue
		}
		d := pt.fresh()
		if err := d.RestoreBytes(sp.data); err != nil {
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
		zap.String("storage", ps.p.cfg.Storage.String()),
		zap.Int("series", series), zap.Strings("restored", restored),
		zap.Time("saved_at", saved), zap.Int("bytes", len(data)), zap.Duration("took", time.Since(start)),
	}
	if len(fresh) > 0 {
		fields = append(fields, zap.Strings("not_in_snapshot", fresh))
	}
	if len(dropped) > 0 {
		fields = append(fields, zap.Strings("no_longer_configured", dropped))
	}
	if len(problems) > 0 {
		warn("iforest: part of the saved models could not be restored; those start fresh (warm up again): "+strings.Join(problems, "; "),
			fields...)
		return
	}
	ps.lastSize = len(data)
	log.Info("iforest: restored the saved models; detection resumes", fields...)
}

// save writes a snapshot of every model to storage. A failure keeps the
// previous snapshot; it is logged as a warning once per run of failures.
func (ps *persister) save(ctx context.Context) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	start := time.Now()
	data, err := ps.encode()
	encoded := time.Since(start)
	if err == nil {
		err = ps.client.Set(ctx, snapshotKey, data)
		ps.p.saveFeedback(ctx, ps.client) // feedback.go
	}
	log := ps.p.logger
	if err != nil {
		ps.p.tel.ProcessorIforestSnapshotErrors.Add(ctx, 1)
		msg := "iforest: could not save the models to storage; the previous snapshot stays"
		if ps.failing {
			log.Debug(msg, zap.Error(err))
		} else {
			log.Warn(msg, zap.String("storage", ps.p.cfg.Storage.String()), zap.Error(err))
		}
		ps.failing = true
		return false
	}
	if ps.failing {
		log.Info("iforest: saving the models to storage works again")
	}
	ps.failing = false
	log.Debug("iforest: saved the models", zap.Int("bytes", len(data)),
		zap.Duration("encode", encoded), zap.Duration("total", time.Since(start)))
	return true
}
