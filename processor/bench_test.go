package iforestprocessor

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/otel-iforest/iforest/internal/metadata"
)

// gaugeBatch makes a fresh batch of one gauge datapoint for each series in
// [from, from+n), as a scrape of n series would arrive.
func gaugeBatch(from, n int, round int, rng *rand.Rand) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "bench")
	m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("bench.gauge")
	dps := m.SetEmptyGauge().DataPoints()
	dps.EnsureCapacity(n)
	ts := pcommon.NewTimestampFromTime(time.Unix(1700000000, 0).Add(time.Duration(round) * 10 * time.Second))
	for i := from; i < from+n; i++ {
		dp := dps.AppendEmpty()
		dp.Attributes().PutInt("series", int64(i))
		dp.SetTimestamp(ts)
		dp.SetDoubleValue(50 + 5*rng.NormFloat64())
	}
	return md
}

func newBenchProcessor(b *testing.B, cfg *Config) processor.Metrics {
	p, err := NewFactory().CreateMetrics(context.Background(), processortest.NewNopSettings(metadata.Type), cfg, consumertest.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkProcessor measures per-series models on gauge batches of up to
// 1000 datapoints: walking pdata, keys, scoring, learning and the rolling
// tree rebuilds are all inside the timed part; making the input batches is
// not. Reports datapoints per second (dp/s) and the heap retained per
// series once every model is warm (B/series). The target is stated
// at GOMAXPROCS=1: run with -cpu 1.
//
// series=N warms every model past warm-up and through one turnover of its
// trees (288 points at the defaults): the window is then not yet full and
// the calibration is still young. series=1000-full-window warms through
// 1.5 windows (1,536 points), the state of a series that has reported for
// a while: the memory per series of a long-running collector.
func BenchmarkProcessor(b *testing.B) {
	for _, c := range []struct {
		series int
		full   bool // warmed through 1.5 windows
	}{{10, false}, {1000, false}, {100000, false}, {1000, true}} {
		series, full := c.series, c.full
		name := fmt.Sprintf("series=%d", series)
		if full {
			name += "-full-window"
		}
		b.Run(name, func(b *testing.B) {
			cfg := createDefaultConfig().(*Config)
			cfg.MaxSeries = 0
			batch := min(series, 1000)
			rng := rand.New(rand.NewPCG(1, 2))
			ctx := context.Background()

			before := heapInUse()
			p := newBenchProcessor(b, cfg)
			// Warm every model past warm-up and through a full tree
			// turnover, or through one and a half windows.
			round := 0
			warmRounds := cfg.Warmup + cfg.Trees*cfg.RefitInterval
			if full {
				warmRounds = cfg.WindowSize * 3 / 2
			}
			for ; round < warmRounds; round++ {
				for from := 0; from < series; from += batch {
					if err := p.ConsumeMetrics(ctx, gaugeBatch(from, batch, round, rng)); err != nil {
						b.Fatal(err)
					}
				}
			}
			perSeries := float64(heapInUse()-before) / float64(series)

			b.ResetTimer()
			from := 0
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				md := gaugeBatch(from, batch, round, rng)
				from += batch
				if from >= series {
					from, round = 0, round+1
				}
				b.StartTimer()
				if err := p.ConsumeMetrics(ctx, md); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "dp/s")
			b.ReportMetric(perSeries, "B/series")
			b.StopTimer()
			runtime.KeepAlive(p)
		})
	}
	b.Run("highcard", func(b *testing.B) {
		b.Run("series=1000000", func(b *testing.B) { benchmarkHighcard(b, 1000000) })
	})
}

// benchHighcard is the warmed processor of the high-cardinality benchmark,
// kept across the benchmark's runs: warming a million series takes a while.
var benchHighcard struct {
	p         processor.Metrics
	round     int
	perSeries float64
}

// benchmarkHighcard is BenchmarkProcessor/highcard: the high-cardinality
// mode on series gauges of one metric, every series past its baseline
// warm-up, fed 1000 datapoints a batch. Reports dp/s and the heap retained
// per series (B/series).
func benchmarkHighcard(b *testing.B, series int) {
	const batch = 1000
	rng := rand.New(rand.NewPCG(1, 2))
	ctx := context.Background()
	hb := &benchHighcard
	if hb.p == nil {
		cfg := createDefaultConfig().(*Config)
		cfg.HighCardinality.Enabled = true
		cfg.HighCardinality.MaxSeries = 0
		before := heapInUse()
		hb.p = newBenchProcessor(b, cfg)
		for ; hb.round <= cfg.HighCardinality.Warmup; hb.round++ {
			for from := 0; from < series; from += batch {
				if err := hb.p.ConsumeMetrics(ctx, gaugeBatch(from, batch, hb.round, rng)); err != nil {
					b.Fatal(err)
				}
			}
		}
		hb.perSeries = float64(heapInUse()-before) / float64(series)
	}
	b.ResetTimer()
	from := 0
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		md := gaugeBatch(from, batch, hb.round, rng)
		from += batch
		if from >= series {
			from, hb.round = 0, hb.round+1
		}
		b.StartTimer()
		if err := hb.p.ConsumeMetrics(ctx, md); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "dp/s")
	b.ReportMetric(hb.perSeries, "B/series")
}

// BenchmarkProcessorParallel feeds one processor from GOMAXPROCS goroutines
// at once, as several receivers or batch workers do. 1000 series in all are
// split between the goroutines (a series must arrive in order, so each owns
// its share), warmed before the timer starts; the total is fixed so that
// -cpu 1 and -cpu 2 score the same working set. Making each goroutine's
// next batch is inside the timed loop (about 0.1 ms per 1000 datapoints).
// Compare -cpu 1,2: shards let throughput grow with cores.
func BenchmarkProcessorParallel(b *testing.B) {
	cfg := createDefaultConfig().(*Config)
	cfg.MaxSeries = 0
	p := newBenchProcessor(b, cfg)
	ctx := context.Background()
	warmRounds := cfg.Warmup + cfg.Trees*cfg.RefitInterval
	workers := runtime.GOMAXPROCS(0)
	series := 1000 / workers
	for w := 0; w < workers; w++ {
		rng := rand.New(rand.NewPCG(uint64(w), 3))
		for round := 0; round < warmRounds; round++ {
			if err := p.ConsumeMetrics(ctx, gaugeBatch(w*series, series, round, rng)); err != nil {
				b.Fatal(err)
			}
		}
	}
	var next atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := int(next.Add(1)-1) % workers
		rng := rand.New(rand.NewPCG(uint64(w), 4))
		for round := warmRounds; pb.Next(); round++ {
			if err := p.ConsumeMetrics(ctx, gaugeBatch(w*series, series, round, rng)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*series)/b.Elapsed().Seconds(), "dp/s")
}
