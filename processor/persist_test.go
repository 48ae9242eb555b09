package iforestprocessor

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc64"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/pmetrictest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	berrors "go.etcd.io/bbolt/errors"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/otel-iforest/iforest/internal/detector"
	"github.com/otel-iforest/iforest/internal/metadata"
	"github.com/otel-iforest/iforest/internal/metadatatest"
)

// memStorage is an in-memory storage extension, as file_storage would be
// across restarts of the processor within one test.
type memStorage struct {
	mu       sync.Mutex
	data     map[string][]byte
	sets     int
	saves    int // manifests set: completed snapshots
	maxValue int // the largest value set
	open     int
	openErr  error
	getErr   error
	setErr   error
	onGet    func()                 // called in Get; may panic, as a storage library with a damaged file does
	onSet    func(key string) error // called before each Set, without s.mu held
	clients  []string
}

func newMemStorage() *memStorage { return &memStorage{data: map[string][]byte{}} }

func (s *memStorage) Start(context.Context, component.Host) error { return nil }
func (s *memStorage) Shutdown(context.Context) error              { return nil }

func (s *memStorage) GetClient(_ context.Context, kind component.Kind, id component.ID, name string) (storage.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.openErr != nil {
		return nil, s.openErr
	}
	s.open++
	prefix := kind.String() + "/" + id.String() + "/" + name + "/"
	s.clients = append(s.clients, prefix)
	return &memClient{s: s, prefix: prefix}, nil
}

// value returns the stored manifest (or version 1 snapshot).
func (s *memStorage) value(t *testing.T) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var found []byte
	for k, v := range s.data {
		if strings.HasSuffix(k, "/"+manifestKey) {
			require.Nil(t, found, "one manifest")
			found = v
		}
	}
	return found
}

// dump copies everything stored; load replaces it with such a copy.
func (s *memStorage) dump() map[string][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string][]byte{}
	for k, v := range s.data {
		m[k] = bytes.Clone(v)
	}
	return m
}

func (s *memStorage) load(m map[string][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data = map[string][]byte{}
	for k, v := range m {
		s.data[k] = bytes.Clone(v)
	}
}

// update changes the stored value of the key ending in suffix.
func (s *memStorage) update(t *testing.T, suffix string, f func([]byte) []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, v := range s.data {
		if strings.HasSuffix(k, "/"+suffix) {
			s.data[k] = f(v)
			n++
		}
	}
	require.Equal(t, 1, n, "one key ending in %q", suffix)
}

func (s *memStorage) setCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sets
}

func (s *memStorage) saveCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.saves
}

type memClient struct {
	s      *memStorage
	prefix string
	closed bool
}

func (c *memClient) Get(_ context.Context, key string) ([]byte, error) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.s.onGet != nil {
		c.s.onGet()
	}
	if c.s.getErr != nil {
		return nil, c.s.getErr
	}
	v, ok := c.s.data[c.prefix+key]
	if !ok {
		return nil, nil
	}
	return bytes.Clone(v), nil
}

func (c *memClient) Set(_ context.Context, key string, value []byte) error {
	c.s.mu.Lock()
	onSet := c.s.onSet
	c.s.mu.Unlock()
	if onSet != nil {
		if err := onSet(key); err != nil {
			return err
		}
	}
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.closed {
		return errors.New("client closed")
	}
	if c.s.setErr != nil {
		return c.s.setErr
	}
	c.s.sets++
	if key == manifestKey {
		c.s.saves++
	}
	c.s.maxValue = max(c.s.maxValue, len(value))
	c.s.data[c.prefix+key] = bytes.Clone(value)
	return nil
}

func (c *memClient) Delete(_ context.Context, key string) error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	delete(c.s.data, c.prefix+key)
	return nil
}

func (c *memClient) Batch(ctx context.Context, ops ...*storage.Operation) error {
	for _, op := range ops {
		var err error
		switch op.Type {
		case storage.Get:
			op.Value, err = c.Get(ctx, op.Key)
		case storage.Set:
			err = c.Set(ctx, op.Key, op.Value)
		case storage.Delete:
			err = c.Delete(ctx, op.Key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *memClient) Close(context.Context) error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	c.closed = true
	c.s.open--
	return nil
}

// extHost is a host with the given extensions.
type extHost map[component.ID]component.Component

func (h extHost) GetExtensions() map[component.ID]component.Component { return h }

var storageID = component.MustNewID("file_storage")

// testPrefix is where memStorage keeps the data of the processor "iforest".
var testPrefix = component.KindProcessor.String() + "/iforest//"

func persistConfig() *Config {
	cfg := createDefaultConfig().(*Config)
	cfg.Storage = &storageID
	cfg.Models = []ModelConfig{hostModel()}
	return cfg
}

// restartBatch is step i of a scenario with every metric type and an entity
// model; spikes come in both halves of 200 steps.
func restartBatch(step int) pmetric.Metrics {
	md := makeBatch(step, step == 60 || step == 150)
	busy := 0.0
	if step == 75 || step == 170 {
		busy = 0.95
	}
	hostScrape(step, busy, true).ResourceMetrics().MoveAndAppendTo(md.ResourceMetrics())
	return md
}

type runningProcessor struct {
	p    processor.Metrics
	sink *consumertest.MetricsSink
	tt   *componenttest.Telemetry
	logs *observer.ObservedLogs
}

func startPersisting(t *testing.T, cfg *Config, host component.Host) (*runningProcessor, error) {
	t.Helper()
	r := &runningProcessor{sink: new(consumertest.MetricsSink), tt: componenttest.NewTelemetry()}
	t.Cleanup(func() { require.NoError(t, r.tt.Shutdown(context.Background())) })
	set := metadatatest.NewSettings(r.tt)
	core, logs := observer.New(zapcore.DebugLevel)
	set.Logger, r.logs = zap.New(core), logs
	p, err := NewFactory().CreateMetrics(context.Background(), set, cfg, r.sink)
	require.NoError(t, err)
	r.p = p
	if err := p.Start(context.Background(), host); err != nil {
		require.NoError(t, p.Shutdown(context.Background()))
		return nil, err
	}
	return r, nil
}

func (r *runningProcessor) feed(t *testing.T, from, to int) {
	t.Helper()
	for step := from; step < to; step++ {
		require.NoError(t, r.p.ConsumeMetrics(context.Background(), restartBatch(step)))
	}
}

func (r *runningProcessor) warnings() []observer.LoggedEntry {
	return r.logs.FilterLevelExact(zapcore.WarnLevel).All()
}

func (r *runningProcessor) assertSnapshotErrors(t *testing.T, n int64) {
	t.Helper()
	if n == 0 {
		_, err := r.tt.GetMetric("otelcol_processor_iforest_snapshot_errors")
		require.Error(t, err, "no snapshot error recorded")
		return
	}
	metadatatest.AssertEqualProcessorIforestSnapshotErrors(t, r.tt, []metricdata.DataPoint[int64]{{Value: n}}, metricdatatest.IgnoreTimestamp())
}

// scoredIn counts the datapoints of md with a verdict, and the flagged ones.
func scoredIn(md pmetric.Metrics) (scored, flagged int) {
	forEachAttrs(md, func(m pcommon.Map) {
		if _, ok := m.Get("anomaly.score"); ok {
			scored++
		}
		if v, ok := m.Get("anomaly.detected"); ok && v.Bool() {
			flagged++
		}
	})
	return scored, flagged
}

// A processor stopped after half a scenario and started again on the same
// storage gives the second half exactly the output of one that never
// stopped: same scores, flags, incidents, entity-model verdicts. The same
// with the snapshot in one chunk and in many.
func TestRestartResumesExactly(t *testing.T) {
	for _, size := range []int{chunkSize, 4096} {
		t.Run(fmt.Sprintf("chunks of %d bytes", size), func(t *testing.T) {
			withChunkSize(t, size)
			testRestartResumesExactly(t)
		})
	}
}

// withChunkSize sets the chunk size of snapshots for the test.
func withChunkSize(t *testing.T, n int) {
	old := chunkSize
	chunkSize = n
	t.Cleanup(func() { chunkSize = old })
}

func testRestartResumesExactly(t *testing.T) {
	const steps, half = 200, 100
	ref, err := startPersisting(t, persistConfig(), extHost{storageID: newMemStorage()})
	require.NoError(t, err)
	ref.feed(t, 0, steps)
	require.NoError(t, ref.p.Shutdown(context.Background()))

	st := newMemStorage()
	first, err := startPersisting(t, persistConfig(), extHost{storageID: st})
	require.NoError(t, err)
	first.feed(t, 0, half)
	require.NoError(t, first.p.Shutdown(context.Background()))
	assert.Equal(t, 0, st.open, "the client is closed at shutdown")
	snap := st.value(t)
	require.NotNil(t, snap, "saved at shutdown")
	assert.Equal(t, component.KindProcessor.String()+"/iforest//", st.clients[0], "client named after the processor")
	m, err := decodeManifest(snap)
	require.NoError(t, err)
	assert.Equal(t, (m.length()+int64(chunkSize)-1)/int64(chunkSize), int64(len(m.crcs)))
	assert.LessOrEqual(t, st.maxValue, chunkSize, "no value larger than a chunk")
	t.Logf("snapshot of %d bytes in %d chunks", m.length(), len(m.crcs))

	second, err := startPersisting(t, persistConfig(), extHost{storageID: st})
	require.NoError(t, err)
	second.feed(t, half, steps)
	require.NoError(t, second.p.Shutdown(context.Background()))
	assert.Empty(t, second.warnings())
	second.assertSnapshotErrors(t, 0)
	restored := second.logs.FilterMessageSnippet("restored the saved models").All()
	require.Len(t, restored, 1)
	t.Logf("%s %v", restored[0].Message, restored[0].ContextMap())

	want, got := ref.sink.AllMetrics()[half:], second.sink.AllMetrics()
	require.Len(t, got, len(want))
	var scored, flagged int
	for i := range want {
		// (hostScrape's datapoint order varies from call to call.)
		require.NoError(t, pmetrictest.CompareMetrics(want[i], got[i], pmetrictest.IgnoreMetricDataPointsOrder()), "step %d", half+i)
		s, f := scoredIn(got[i])
		scored, flagged = scored+s, flagged+f
	}
	// Not vacuous: the first batch after the restart is scored (no new
	// warm-up), the second half has anomalies, entity verdicts included.
	s0, _ := scoredIn(got[0])
	assert.Greater(t, s0, 10)
	assert.Greater(t, flagged, 2)
	assert.Greater(t, scored, 1000)
	hostVerdicts := 0
	for _, md := range got {
		forEachAttrs(md, func(m pcommon.Map) {
			if v, ok := m.Get("anomaly.model"); ok && v.Str() == "host" {
				hostVerdicts++
			}
		})
	}
	assert.Greater(t, hostVerdicts, 100)
}

// Saves happen every checkpoint_interval while data flows, and not when
// nothing happened: a crash loses at most one interval.
func TestPeriodicCheckpoint(t *testing.T) {
	cfg := persistConfig()
	cfg.CheckpointInterval = 20 * time.Millisecond
	st := newMemStorage()
	r, err := startPersisting(t, cfg, extHost{storageID: st})
	require.NoError(t, err)
	r.feed(t, 0, 40)
	require.Eventually(t, func() bool { return st.saveCount() >= 1 }, 5*time.Second, 5*time.Millisecond)
	// Idle: once the save of the last data is complete (a slow machine may
	// still be writing it), no more saves.
	require.Eventually(t, func() bool {
		n := st.setCount()
		time.Sleep(3 * cfg.CheckpointInterval)
		return st.setCount() == n
	}, 5*time.Second, time.Millisecond)
	n := st.setCount()
	time.Sleep(10 * cfg.CheckpointInterval)
	assert.Equal(t, n, st.setCount(), "no save without new data")

	// A crash now (no shutdown save) resumes from the checkpoint.
	other := newMemStorage()
	other.load(st.dump())
	r2, err := startPersisting(t, persistConfig(), extHost{storageID: other})
	require.NoError(t, err)
	r2.feed(t, 40, 41)
	s, _ := scoredIn(r2.sink.AllMetrics()[0])
	assert.Greater(t, s, 5, "scored right after the restart")
	require.NoError(t, r2.p.Shutdown(context.Background()))
	require.NoError(t, r.p.Shutdown(context.Background()))
	assert.Equal(t, 0, st.open)
}

func TestStorageExtensionMissingOrWrong(t *testing.T) {
	_, err := startPersisting(t, persistConfig(), extHost{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `storage: extension "file_storage" not found`)

	_, err = startPersisting(t, persistConfig(), extHost{storageID: notStorage{}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `storage: extension "file_storage" is not a storage extension`)

	// Without storage nothing is needed.
	r, err := startPersisting(t, createDefaultConfig().(*Config), extHost{})
	require.NoError(t, err)
	require.NoError(t, r.p.Shutdown(context.Background()))
}

// notStorage is an extension that is not a storage extension.
type notStorage struct{}

func (notStorage) Start(context.Context, component.Host) error { return nil }
func (notStorage) Shutdown(context.Context) error              { return nil }

// A damaged manifest or chunk: one warning that says what and that
// detection starts fresh, one count, and the processor works (warming up
// again).
func TestCorruptSnapshotStartsFresh(t *testing.T) {
	withChunkSize(t, 4096)
	st := newMemStorage()
	r, err := startPersisting(t, persistConfig(), extHost{storageID: st})
	require.NoError(t, err)
	r.feed(t, 0, 60)
	require.NoError(t, r.p.Shutdown(context.Background()))
	good := st.dump()
	m, err := decodeManifest(st.value(t))
	require.NoError(t, err)
	require.Greater(t, len(m.crcs), 3)
	slot := int(m.gen % 2)
	chunk := chunkKey(slot, 0) // in the per-series models' part, the first

	flip := func(b []byte) []byte { b = bytes.Clone(b); b[len(b)/2] ^= 0x10; return b }
	for _, c := range []struct {
		name, key, message string
		damage             func([]byte) []byte
	}{
		{"flipped", manifestKey, "the saved models are unreadable", flip},
		{"truncated", manifestKey, "the saved models are unreadable", func(b []byte) []byte { return b[:len(b)*2/3] }},
		{"garbage", manifestKey, "the saved models are unreadable", func([]byte) []byte { return []byte("not a snapshot at all") }},
		{"empty", manifestKey, "the saved models are unreadable", func([]byte) []byte { return []byte{} }},
		{"chunk flipped", chunk, "series: reading snapshot: chunk", flip},
		{"chunk truncated", chunk, "series: reading snapshot: chunk", func(b []byte) []byte { return b[:len(b)-1] }},
		{"chunk placeholder", chunk, "series: reading snapshot: chunk", func([]byte) []byte { return placeholder }},
	} {
		t.Run(c.name, func(t *testing.T) {
			st.load(good)
			st.update(t, c.key, c.damage)
			r, err := startPersisting(t, persistConfig(), extHost{storageID: st})
			require.NoError(t, err)
			w := r.warnings()
			require.Len(t, w, 1, "one warning")
			assert.Contains(t, w[0].Message, c.message)
			assert.Contains(t, w[0].Message, "fresh")
			t.Logf("%s %v", w[0].Message, w[0].ContextMap())
			r.assertSnapshotErrors(t, 1)

			// It works: warms up, then scores.
			r.feed(t, 60, 100)
			first := 0
			forEachAttrs(r.sink.AllMetrics()[0], func(m pcommon.Map) {
				_, scored := m.Get("anomaly.score")
				_, entity := m.Get("anomaly.model")
				if scored && !entity {
					first++
				}
			})
			assert.Equal(t, 0, first, "fresh per-series models warm up")
			last, _ := scoredIn(r.sink.AllMetrics()[39])
			assert.Greater(t, last, 5)
			require.NoError(t, r.p.Shutdown(context.Background()))
			// The damaged value was replaced by a good one.
			r2, err := startPersisting(t, persistConfig(), extHost{storageID: st})
			require.NoError(t, err)
			assert.Empty(t, r2.warnings())
			require.NoError(t, r2.p.Shutdown(context.Background()))
		})
	}
}

// Changed model settings: the affected detector starts fresh, the others
// resume, with one warning naming what changed.
func TestChangedConfigRestoresWhatStillFits(t *testing.T) {
	st := newMemStorage()
	r, err := startPersisting(t, persistConfig(), extHost{storageID: st})
	require.NoError(t, err)
	r.feed(t, 0, 60)
	require.NoError(t, r.p.Shutdown(context.Background()))
	good := st.dump()

	cfg := persistConfig()
	was := cfg.WindowSize
	cfg.WindowSize = 2000 // the per-series models; the host model keeps what it inherited
	cfg.Models[0].WindowSize = was
	cfg.Models[0].Trees = 40 // adapted to: it keeps its newest trees and grows
	st.load(good)
	r, err = startPersisting(t, cfg, extHost{storageID: st})
	require.NoError(t, err)
	w := r.warnings()
	require.Len(t, w, 1)
	assert.Contains(t, w[0].Message, fmt.Sprintf("series: snapshot is incompatible: taken with a different model configuration: window_size was %d, now 2000", was))
	assert.Equal(t, []any{"model/host"}, w[0].ContextMap()["restored"])
	r.assertSnapshotErrors(t, 1)
	require.NoError(t, r.p.Shutdown(context.Background()))

	st.load(good)
	cfg = persistConfig()
	cfg.Models[0].Features[0], cfg.Models[0].Features[1] = cfg.Models[0].Features[1], cfg.Models[0].Features[0]
	cfg.Models = append(cfg.Models, ModelConfig{Name: "new", Features: cfg.Models[0].Features, Staleness: time.Minute, ForestConfig: cfg.ForestConfig})
	r, err = startPersisting(t, cfg, extHost{storageID: st})
	require.NoError(t, err)
	w = r.warnings()
	require.Len(t, w, 1)
	assert.Contains(t, w[0].Message, "model/host: its features or entity changed")
	assert.Equal(t, []any{"series"}, w[0].ContextMap()["restored"])
	assert.Equal(t, []any{"model/new"}, w[0].ContextMap()["not_in_snapshot"])
	require.NoError(t, r.p.Shutdown(context.Background()))

	// A model removed from the config is dropped quietly.
	st.load(good)
	cfg = persistConfig()
	cfg.Models = nil
	r, err = startPersisting(t, cfg, extHost{storageID: st})
	require.NoError(t, err)
	assert.Empty(t, r.warnings())
	info := r.logs.FilterMessageSnippet("restored the saved models").All()
	require.Len(t, info, 1)
	assert.Equal(t, []any{"model/host"}, info[0].ContextMap()["no_longer_configured"])
	require.NoError(t, r.p.Shutdown(context.Background()))
}

// A storage that cannot be opened (a damaged or locked database file)
// does not stop the collector: one warning, no persistence this run.
func TestStorageCannotOpen(t *testing.T) {
	st := newMemStorage()
	st.openErr = errors.New("invalid database")
	r, err := startPersisting(t, persistConfig(), extHost{storageID: st})
	require.NoError(t, err)
	w := r.warnings()
	require.Len(t, w, 1)
	assert.Contains(t, w[0].Message, "cannot open its storage; detection starts fresh and the models will not be saved in this run")
	assert.Equal(t, "invalid database", w[0].ContextMap()["error"])
	r.assertSnapshotErrors(t, 1)
	r.feed(t, 0, 40)
	last, _ := scoredIn(r.sink.AllMetrics()[39])
	assert.Greater(t, last, 5)
	require.NoError(t, r.p.Shutdown(context.Background()))
	assert.Empty(t, st.data)
	assert.Len(t, r.warnings(), 1)
}

func TestStorageErrors(t *testing.T) {
	st := newMemStorage()
	st.getErr = errors.New("disk on fire")
	cfg := persistConfig()
	cfg.CheckpointInterval = 10 * time.Millisecond
	r, err := startPersisting(t, cfg, extHost{storageID: st})
	require.NoError(t, err)
	w := r.warnings()
	require.Len(t, w, 1)
	assert.Contains(t, w[0].Message, "could not read the saved models")
	assert.Equal(t, "disk on fire", w[0].ContextMap()["error"])

	// Failing saves: counted each time, a warning once per run of failures.
	st.mu.Lock()
	st.setErr = errors.New("disk full")
	st.mu.Unlock()
	for i := range 3 {
		r.feed(t, i, i+1)
		time.Sleep(40 * time.Millisecond)
	}
	require.NoError(t, r.p.Shutdown(context.Background()))
	w = r.warnings()
	require.Len(t, w, 2)
	assert.Contains(t, w[1].Message, "could not save the models")
	saveErrs := r.logs.FilterMessageSnippet("could not save").Len()
	assert.GreaterOrEqual(t, saveErrs, 2)
	r.assertSnapshotErrors(t, int64(1+saveErrs))
}

func TestPersistenceConfig(t *testing.T) {
	cm := confmap.NewFromStringMap(map[string]any{"storage": "file_storage/state", "checkpoint_interval": "30s"})
	cfg := createDefaultConfig().(*Config)
	require.NoError(t, cm.Unmarshal(cfg))
	require.NoError(t, cfg.Validate())
	assert.Equal(t, component.MustNewIDWithName("file_storage", "state"), *cfg.Storage)
	assert.Equal(t, 30*time.Second, cfg.CheckpointInterval)

	def := createDefaultConfig().(*Config)
	assert.Nil(t, def.Storage, "off by default")
	assert.Equal(t, time.Minute, def.CheckpointInterval)

	cfg.CheckpointInterval = 0
	assert.ErrorContains(t, cfg.Validate(), "checkpoint_interval: must be at least 1s, got 0s")
	cfg.CheckpointInterval = -time.Second
	cfg.Storage = nil
	assert.ErrorContains(t, cfg.Validate(), "checkpoint_interval: must be at least 1s, got -1s")

	err := confmap.NewFromStringMap(map[string]any{"storage": "Bad Name!"}).Unmarshal(createDefaultConfig())
	assert.ErrorContains(t, err, "storage")
}

// BenchmarkCheckpoint measures what a save costs with n warm series
// (default settings, full windows): encoding every model into chunks (the
// part that takes the shards' locks, one shard at a time) stored in a store
// that keeps nothing, and decoding them at start. B/op of save is what a
// save allocates: a chunk and a shard's encoding, not the snapshot.
func BenchmarkCheckpoint(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		cfg := createDefaultConfig().(*Config)
		cfg.Storage, cfg.MaxSeries = &storageID, 0
		p, err := newProcessor(processortest.NewNopSettings(metadata.Type), cfg)
		require.NoError(b, err)
		rng := rand.New(rand.NewPCG(1, 2))
		for round := range cfg.WindowSize {
			for from := 0; from < n; from += 1000 {
				_, err := p.processMetrics(context.Background(), gaugeBatch(from, min(1000, n-from), round, rng))
				require.NoError(b, err)
			}
		}
		c := p.ckpt
		c.client = discardClient{}
		m, err := c.write(context.Background())
		require.NoError(b, err)
		b.Run(fmt.Sprintf("save/series=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.write(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(m.length())/float64(n), "B/series")
			b.ReportMetric(float64(m.length())/(1<<20), "MiB")
		})
		var snap bytes.Buffer
		require.NoError(b, p.det.Snapshot(&snap))
		b.Run(fmt.Sprintf("restore/series=%d", n), func(b *testing.B) {
			for b.Loop() {
				d := detector.New(cfg.detectorConfig(), 0)
				if err := d.RestoreBytes(snap.Bytes()); err != nil {
					b.Fatal(err)
				}
			}
		})
		p.tel.Shutdown()
	}
}

// discardClient stores nothing.
type discardClient struct{}

func (discardClient) Get(context.Context, string) ([]byte, error)        { return nil, nil }
func (discardClient) Set(context.Context, string, []byte) error          { return nil }
func (discardClient) Delete(context.Context, string) error               { return nil }
func (discardClient) Batch(context.Context, ...*storage.Operation) error { return nil }
func (discardClient) Close(context.Context) error                        { return nil }

// newPersisting makes a processor with storage, not started, whose logs
// and telemetry the test sees.
func newPersisting(t *testing.T, cfg *Config) (*iforestProcessor, *observer.ObservedLogs, *componenttest.Telemetry) {
	t.Helper()
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	set := metadatatest.NewSettings(tt)
	core, logs := observer.New(zapcore.DebugLevel)
	set.Logger = zap.New(core)
	p, err := newProcessor(set, cfg)
	require.NoError(t, err)
	return p, logs, tt
}

func feedProcessor(t *testing.T, p *iforestProcessor, from, to int) {
	t.Helper()
	for step := from; step < to; step++ {
		_, err := p.processMetrics(context.Background(), restartBatch(step))
		require.NoError(t, err)
	}
}

// A save that fails half way (a crash would do the same) leaves the
// previous snapshot whole: the next start restores it, as it was.
func TestFailedSaveKeepsPreviousSnapshot(t *testing.T) {
	withChunkSize(t, 4096)
	st := newMemStorage()
	ctx := context.Background()
	p, logs, _ := newPersisting(t, persistConfig())
	require.NoError(t, p.start(ctx, extHost{storageID: st}))
	feedProcessor(t, p, 0, 60)
	require.True(t, p.ckpt.save(ctx))
	saved := st.dump()
	var want bytes.Buffer
	require.NoError(t, p.det.Snapshot(&want))
	m, err := decodeManifest(st.value(t))
	require.NoError(t, err)
	require.Greater(t, len(m.crcs), 4)

	// More data, then a save whose fourth chunk cannot be written.
	feedProcessor(t, p, 60, 80)
	chunks := 0
	st.mu.Lock()
	st.onSet = func(key string) error {
		if !strings.HasPrefix(key, manifestKey+".") {
			return nil
		}
		if chunks++; chunks == 4 {
			return errors.New("disk on fire")
		}
		return nil
	}
	st.mu.Unlock()
	require.False(t, p.ckpt.save(ctx))
	assert.Equal(t, 1, logs.FilterMessageSnippet("could not save the models to storage; the previous snapshot stays").Len())
	crashed := st.dump()
	assert.Equal(t, saved[st.clients[0]+manifestKey], crashed[st.clients[0]+manifestKey], "the manifest is the previous one")
	assert.NotEqual(t, saved, crashed, "chunks of the other slot were written")
	require.NoError(t, p.shutdown(ctx)) // saves: the storage works again
	require.Equal(t, 1, logs.FilterMessageSnippet("saving the models to storage works again").Len())

	// Start on what the failed save left.
	other := newMemStorage()
	other.load(crashed)
	q, qlogs, _ := newPersisting(t, persistConfig())
	require.NoError(t, q.start(ctx, extHost{storageID: other}))
	assert.Empty(t, qlogs.FilterLevelExact(zapcore.WarnLevel).All())
	require.Equal(t, 1, qlogs.FilterMessageSnippet("restored the saved models").Len())
	var got bytes.Buffer
	require.NoError(t, q.det.Snapshot(&got))
	assert.Equal(t, want.Bytes(), got.Bytes(), "the models of the last complete save")
	require.NoError(t, q.shutdown(ctx))
}

// Storage is written with no shard of a detector locked: batches go on
// while a save waits for the disk.
func TestSaveHoldsNoLockDuringStorageIO(t *testing.T) {
	withChunkSize(t, 4096)
	st := newMemStorage()
	ctx := context.Background()
	p, _, _ := newPersisting(t, persistConfig())
	require.NoError(t, p.start(ctx, extHost{storageID: st}))
	feedProcessor(t, p, 0, 40)
	batch := gaugeBatch(0, 256, 0, rand.New(rand.NewPCG(1, 1))) // series in every shard
	writes := 0
	st.mu.Lock()
	st.onSet = func(key string) error {
		if !strings.HasPrefix(key, manifestKey+".") {
			return nil
		}
		writes++
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = p.processMetrics(ctx, batch)
		}()
		select {
		case <-done:
			return nil
		case <-time.After(10 * time.Second):
			return errors.New("a batch waited for the save: a lock is held during storage I/O")
		}
	}
	st.mu.Unlock()
	require.True(t, p.ckpt.save(ctx))
	assert.Greater(t, writes, 4)
	st.mu.Lock()
	st.onSet = nil
	st.mu.Unlock()
	require.NoError(t, p.shutdown(ctx))
}

// Chunks a smaller snapshot no longer uses are emptied, so that their space
// is reused rather than kept.
func TestUnusedChunksAreEmptied(t *testing.T) {
	withChunkSize(t, 4096)
	st := newMemStorage()
	ctx := context.Background()
	p, _, _ := newPersisting(t, persistConfig())
	require.NoError(t, p.start(ctx, extHost{storageID: st}))
	feedProcessor(t, p, 0, 60)
	require.True(t, p.ckpt.save(ctx)) // slot b
	big, err := decodeManifest(st.value(t))
	require.NoError(t, err)
	feedProcessor(t, p, 60, 61)
	require.True(t, p.ckpt.save(ctx)) // slot a

	// Most series go; the next save, in slot b again, is smaller.
	require.Positive(t, p.det.Evict(time.Now().UnixNano()+1))
	p.det.Observe(detector.Point{Key: 1, Kind: detector.Gauge, Time: 1, V0: 1}, 1)
	require.True(t, p.ckpt.save(ctx))
	small, err := decodeManifest(st.value(t))
	require.NoError(t, err)
	require.Equal(t, big.gen%2, small.gen%2)
	require.Less(t, len(small.crcs), len(big.crcs))
	data := st.dump()
	prefix := st.clients[0]
	for i := range big.crcs {
		v := data[prefix+chunkKey(int(small.gen%2), i)]
		if i < len(small.crcs) {
			assert.Greater(t, len(v), 1, "chunk %d holds data", i)
		} else {
			assert.Equal(t, placeholder, v, "chunk %d is emptied", i)
		}
	}
	for i := range big.crcs {
		for _, k := range chunkKeys(int(small.gen%2), i)[1:] {
			assert.Equal(t, placeholder, data[prefix+k])
		}
	}
	require.NoError(t, p.shutdown(ctx))
}

// legacySnapshot is what a save of the format version 1 stored: the whole
// snapshot in one value.
func legacySnapshot(t *testing.T, parts []part) []byte {
	le := binary.LittleEndian
	var buf bytes.Buffer
	b := append([]byte(nil), envelopeMagic[:]...)
	b = le.AppendUint16(b, versionOne)
	b = le.AppendUint64(b, uint64(time.Now().UnixNano()))
	b = le.AppendUint32(b, uint32(len(parts)))
	buf.Write(b)
	for _, pt := range parts {
		var snap bytes.Buffer
		require.NoError(t, pt.det.Snapshot(&snap))
		b = le.AppendUint16(b[:0], uint16(len(pt.name)))
		b = append(b, pt.name...)
		b = le.AppendUint64(b, pt.sig)
		b = le.AppendUint64(b, uint64(snap.Len()))
		buf.Write(b)
		buf.Write(snap.Bytes())
	}
	buf.Write(le.AppendUint64(nil, crc64.Checksum(buf.Bytes(), envelopeCRC)))
	return buf.Bytes()
}

// A snapshot saved whole by an earlier version is restored, and the next
// save replaces it with chunks.
func TestLegacySnapshotRestores(t *testing.T) {
	ctx := context.Background()
	p, _, _ := newPersisting(t, persistConfig())
	feedProcessor(t, p, 0, 60)
	st := newMemStorage()
	st.data[testPrefix+manifestKey] = legacySnapshot(t, p.ckpt.parts())
	var want bytes.Buffer
	require.NoError(t, p.det.Snapshot(&want))
	p.tel.Shutdown()

	r, err := startPersisting(t, persistConfig(), extHost{storageID: st})
	require.NoError(t, err)
	assert.Empty(t, r.warnings())
	info := r.logs.FilterMessageSnippet("restored the saved models").All()
	require.Len(t, info, 1)
	assert.Equal(t, []any{"series", "model/host"}, info[0].ContextMap()["restored"])
	r.feed(t, 60, 61)
	s, _ := scoredIn(r.sink.AllMetrics()[0])
	assert.Greater(t, s, 10, "scored from the first batch")
	require.NoError(t, r.p.Shutdown(context.Background()))
	m, err := decodeManifest(st.value(t))
	require.NoError(t, err)
	assert.Nil(t, m.legacy, "saved as chunks")
	assert.Equal(t, []string{"series", "model/host"}, []string{m.parts[0].name, m.parts[1].name})
	_ = ctx
}

// The storage library crashing while the processor reads (a damaged file
// it reads through a memory map faults, or fails one of its assertions):
// the processor starts, says once what happened and what to remove, does
// not use the storage again in this run, and scores after a warm-up.
func TestStorageCrashWhileReading(t *testing.T) {
	st := newMemStorage()
	r, err := startPersisting(t, persistConfig(), extHost{storageID: st})
	require.NoError(t, err)
	r.feed(t, 0, 60)
	require.NoError(t, r.p.Shutdown(context.Background()))
	sets := st.setCount()

	st.onGet = func() { panic("assertion failed: Page expected to be: 23, but self identifies as 0") }
	r, err = startPersisting(t, persistConfig(), extHost{storageID: st})
	require.NoError(t, err)
	w := r.warnings()
	require.Len(t, w, 1)
	assert.Contains(t, w[0].Message, "the storage extension crashed reading its data: it is damaged. Detection starts fresh (models warm up again) and the models will not be saved in this run")
	assert.Contains(t, w[0].Message, "processor_<type>_<name>")
	assert.Contains(t, w[0].ContextMap()["error"], "assertion failed")
	r.assertSnapshotErrors(t, 1)
	assert.Equal(t, 0, st.open, "the client is closed")
	r.feed(t, 60, 100)
	last, _ := scoredIn(r.sink.AllMetrics()[39])
	assert.Greater(t, last, 5)
	require.NoError(t, r.p.Shutdown(context.Background()))
	assert.Equal(t, sets, st.setCount(), "nothing saved")
	assert.Len(t, r.warnings(), 1)
}

// A crash of the storage library while saving, with the storage file known
// (file_storage): the file is moved aside, a new one opened, and the models
// are saved in it.
func TestStorageCrashWhileSavingMovesTheFileAside(t *testing.T) {
	ctx := context.Background()
	st := newMemStorage()
	p, logs, _ := newPersisting(t, persistConfig())
	require.NoError(t, p.start(ctx, extHost{storageID: st}))
	p.ckpt.file = filepath.Join(t.TempDir(), "processor_iforest_")
	require.NoError(t, os.WriteFile(p.ckpt.file, []byte("the damaged file"), 0o600))
	feedProcessor(t, p, 0, 40)
	st.mu.Lock()
	st.onSet = func(string) error { panic("assertion failed") }
	st.mu.Unlock()
	require.False(t, p.ckpt.save(ctx))
	w := logs.FilterLevelExact(zapcore.WarnLevel).All()
	require.Len(t, w, 1)
	assert.Contains(t, w[0].Message, "the storage file is damaged; moved it aside (delete it when you like) and started a new one: the models in memory are not affected; the next checkpoint saves them in the new file")
	moved, err := os.ReadFile(p.ckpt.file + ".damaged")
	require.NoError(t, err)
	assert.Equal(t, "the damaged file", string(moved))
	assert.Equal(t, 2, len(st.clients), "a new client")
	st.mu.Lock()
	st.onSet = nil
	st.mu.Unlock()
	require.True(t, p.ckpt.save(ctx))
	m, err := decodeManifest(st.value(t))
	require.NoError(t, err)
	assert.Equal(t, uint64(1), m.gen, "a new store starts at the first generation")
	require.NoError(t, p.shutdown(ctx))
	assert.Equal(t, 0, st.open)
}

// errStorage is a storage extension whose clients cannot be had.
type errStorage struct{ err error }

func (errStorage) Start(context.Context, component.Host) error { return nil }
func (errStorage) Shutdown(context.Context) error              { return nil }
func (s errStorage) GetClient(context.Context, component.Kind, component.ID, string) (storage.Client, error) {
	return nil, s.err
}

// The usual storage troubles are named with what to do about them.
func TestStorageTroubleExplained(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&fs.PathError{Op: "open", Path: "/var/lib/otelcol/processor_iforest_", Err: syscall.EROFS}, "the storage directory is on a read-only file system: mount it read-write"},
		{&fs.PathError{Op: "open", Path: "/var/lib/otelcol/processor_iforest_", Err: syscall.EACCES}, "no permission to write the storage directory or its file"},
		{berrors.ErrTimeout, "its file is locked by another process: is another collector using the same storage directory?"},
		{fmt.Errorf("%w: x", errStoreLocked), "its file is locked by another process"},
		{storage.ErrStorageFull, "max_size is reached"},
		{&fs.PathError{Op: "write", Path: "f", Err: syscall.ENOSPC}, "the disk is full"},
		{fmt.Errorf("reading snapshot: %w", &storeFault{"boom"}), "crashed reading its data"},
	} {
		assert.Contains(t, storageTrouble(c.err), c.want, "%v", c.err)
	}
	assert.Empty(t, storageTrouble(errors.New("disk on fire")))

	// As the processor says it.
	err := &fs.PathError{Op: "open", Path: "/data/processor_iforest_", Err: syscall.EROFS}
	r, err2 := startPersisting(t, persistConfig(), extHost{storageID: errStorage{err}})
	require.NoError(t, err2)
	w := r.warnings()
	require.Len(t, w, 1)
	assert.Equal(t, "cannot open its storage: the storage directory is on a read-only file system: mount it read-write; detection starts fresh and the models will not be saved in this run", w[0].Message)
	assert.Equal(t, err.Error(), w[0].ContextMap()["error"])
	require.NoError(t, r.p.Shutdown(context.Background()))

	st := newMemStorage()
	cfg := persistConfig()
	cfg.CheckpointInterval = 10 * time.Millisecond
	r, err2 = startPersisting(t, cfg, extHost{storageID: st})
	require.NoError(t, err2)
	st.mu.Lock()
	st.setErr = &fs.PathError{Op: "write", Path: "/data/processor_iforest_", Err: syscall.ENOSPC}
	st.mu.Unlock()
	r.feed(t, 0, 1)
	require.Eventually(t, func() bool { return len(r.warnings()) == 1 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, "could not save the models to storage: the disk is full; the previous snapshot stays", r.warnings()[0].Message)
	require.NoError(t, r.p.Shutdown(context.Background()))
}

// A manifest survives encoding, and one that does not add up is refused.
func TestManifestChecks(t *testing.T) {
	m := &manifest{saved: time.Unix(0, 1234), gen: 7, chunkSize: 10, slots: [2]slotKeys{{4, 2}, {9, 3}}, crcs: []uint64{1, 2, 3},
		parts: []partRef{{name: "series", off: 0, size: 14}, {name: "model/host", sig: 99, off: 14, size: 12}}}
	got, err := decodeManifest(m.encode())
	require.NoError(t, err)
	assert.Equal(t, m.saved.UnixNano(), got.saved.UnixNano())
	got.saved = m.saved
	assert.Equal(t, m, got)

	reseal := func(b []byte) []byte {
		b = b[:len(b)-8]
		return binary.LittleEndian.AppendUint64(b, crc64.Checksum(b, envelopeCRC))
	}
	for name, change := range map[string]func(*manifest){
		"chunk count":   func(m *manifest) { m.crcs = m.crcs[:2] },
		"chunk size":    func(m *manifest) { m.chunkSize = 0 },
		"current slot":  func(m *manifest) { m.slots[1].used = 2 },
		"used > exists": func(m *manifest) { m.slots[0] = slotKeys{1, 2} },
		"part twice":    func(m *manifest) { m.parts[1].name = "series" },
	} {
		bad := *m
		bad.slots, bad.crcs, bad.parts = m.slots, slices.Clone(m.crcs), slices.Clone(m.parts)
		change(&bad)
		_, err := decodeManifest(bad.encode())
		assert.Error(t, err, name)
	}
	// Any byte changed and resealed: an error or a manifest, never a panic.
	b := m.encode()
	for i := 8; i < len(b)-8; i++ {
		for _, mask := range []byte{0x01, 0x80, 0xFF} {
			c := bytes.Clone(b)
			c[i] ^= mask
			_, _ = decodeManifest(reseal(c))
		}
	}
	for n := range len(b) {
		_, err := decodeManifest(b[:n])
		assert.Error(t, err, "truncated to %d", n)
	}
}
