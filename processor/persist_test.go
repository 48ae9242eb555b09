package iforestprocessor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/pmetrictest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
	mu      sync.Mutex
	data    map[string][]byte
	sets    int
	open    int
	openErr error
	getErr  error
	setErr  error
	clients []string
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

func (s *memStorage) value(t *testing.T) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var found []byte
	for k, v := range s.data {
		if strings.HasSuffix(k, "/"+snapshotKey) {
			require.Nil(t, found, "one snapshot key")
			found = v
		}
	}
	return found
}

func (s *memStorage) setValue(v []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.data {
		s.data[k] = v
	}
}

func (s *memStorage) setCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sets
}

type memClient struct {
	s      *memStorage
	prefix string
	closed bool
}

func (c *memClient) Get(_ context.Context, key string) ([]byte, error) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
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
	defer c.s.mu.Unlock()
	if c.closed {
		return errors.New("client closed")
	}
	if c.s.setErr != nil {
		return c.s.setErr
	}
	c.s.sets++
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
// stopped: same scores, flags, incidents, entity-model verdicts.
func TestRestartResumesExactly(t *testing.T) {
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
	require.Eventually(t, func() bool { return st.setCount() >= 1 }, 5*time.Second, 5*time.Millisecond)
	// Idle: no more saves.
	time.Sleep(60 * time.Millisecond)
	n := st.setCount()
	time.Sleep(100 * time.Millisecond)
	assert.Equal(t, n, st.setCount(), "no save without new data")

	// A crash now (no shutdown save) resumes from the checkpoint.
	crashed := st.value(t)
	other := newMemStorage()
	other.data[st.clients[0]+snapshotKey] = crashed
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

// A damaged stored value: one warning that says what and that detection
// starts fresh, one count, and the processor works (warming up again).
func TestCorruptSnapshotStartsFresh(t *testing.T) {
	st := newMemStorage()
	r, err := startPersisting(t, persistConfig(), extHost{storageID: st})
	require.NoError(t, err)
	r.feed(t, 0, 60)
	require.NoError(t, r.p.Shutdown(context.Background()))
	good := st.value(t)

	for name, damage := range map[string]func([]byte) []byte{
		"flipped":   func(b []byte) []byte { b = bytes.Clone(b); b[len(b)/2] ^= 0x10; return b },
		"truncated": func(b []byte) []byte { return b[:len(b)*2/3] },
		"garbage":   func([]byte) []byte { return []byte("not a snapshot at all") },
		"empty":     func([]byte) []byte { return []byte{} },
	} {
		t.Run(name, func(t *testing.T) {
			st.setValue(damage(good))
			r, err := startPersisting(t, persistConfig(), extHost{storageID: st})
			require.NoError(t, err)
			w := r.warnings()
			require.Len(t, w, 1, "one warning")
			assert.Contains(t, w[0].Message, "the saved models are unreadable; detection starts fresh")
			assert.NotEmpty(t, w[0].ContextMap()["error"])
			t.Logf("%s %v", w[0].Message, w[0].ContextMap())
			r.assertSnapshotErrors(t, 1)

			// It works: warms up, then scores.
			r.feed(t, 60, 100)
			first, _ := scoredIn(r.sink.AllMetrics()[0])
			assert.Equal(t, 0, first, "fresh models warm up")
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
	good := st.value(t)

	cfg := persistConfig()
	cfg.Trees = 40 // the per-series models; the host model keeps its own... inherited trees too
	cfg.Models[0].Trees = 32
	r, err = startPersisting(t, cfg, extHost{storageID: st})
	require.NoError(t, err)
	w := r.warnings()
	require.Len(t, w, 1)
	assert.Contains(t, w[0].Message, "series: snapshot is incompatible: taken with a different model configuration: trees was 32, now 40")
	assert.Equal(t, []any{"model/host"}, w[0].ContextMap()["restored"])
	r.assertSnapshotErrors(t, 1)
	require.NoError(t, r.p.Shutdown(context.Background()))

	st.setValue(good)
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
	st.setValue(good)
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
	assert.Contains(t, w[0].Message, "iforest: cannot open its storage; detection starts fresh and the models will not be saved in this run")
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
// (default settings, full windows): encoding every model (the part that
// takes the shards' locks, one shard at a time) and decoding it at start.
// It reports the snapshot's size per series.
func BenchmarkCheckpoint(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		cfg := createDefaultConfig().(*Config)
		cfg.Storage, cfg.MaxSeries = &storageID, 0
		p, err := newProcessor(processortest.NewNopSettings(metadata.Type), cfg)
		require.NoError(b, err)
		ps := newPersister(p, component.NewID(metadata.Type))
		rng := rand.New(rand.NewPCG(1, 2))
		for round := range cfg.WindowSize {
			for from := 0; from < n; from += 1000 {
				_, err := ps.process(context.Background(), gaugeBatch(from, min(1000, n-from), round, rng))
				require.NoError(b, err)
			}
		}
		data, err := ps.encode()
		require.NoError(b, err)
		b.Run(fmt.Sprintf("encode/series=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := ps.encode(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(data))/float64(n), "B/series")
			b.ReportMetric(float64(len(data))/(1<<20), "MiB")
		})
		b.Run(fmt.Sprintf("restore/series=%d", n), func(b *testing.B) {
			_, parts, err := decodeEnvelope(data)
			require.NoError(b, err)
			for b.Loop() {
				d := detector.New(cfg.detectorConfig(), 0)
				if err := d.RestoreBytes(parts[partSeries].data); err != nil {
					b.Fatal(err)
				}
			}
		})
		p.tel.Shutdown()
	}
}
