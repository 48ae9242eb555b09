package iforestprocessor

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/otel-iforest/iforest/internal/metadata"
)

// The scale-out in examples/scale-out/ rests on one property: a series'
// verdicts depend only on that series' own points, so a tier of collectors
// that each receive whole series (the load-balancing exporter with
// routing_key: streamID) flags exactly what one big collector would. The
// exporter is not available here, so these tests split each batch the way
// it does and compare.

// canonicalMap writes m's pairs sorted by key, with the value's type, and
// leaves out the processor's own output attributes: the routing of the first
// tier never sees them, and the comparison needs the identity without them.
func canonicalMap(sb *strings.Builder, m pcommon.Map) {
	keys := make([]string, 0, m.Len())
	for k := range m.All() {
		if !strings.HasPrefix(k, "anomaly.") {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		v, _ := m.Get(k)
		fmt.Fprintf(sb, "%q=%s:%q,", k, v.Type(), v.AsString())
	}
}

// streamID is a datapoint's stream identity as the first tier routes on it:
// resource attributes, scope (name, version, attributes), metric name and
// datapoint attributes. It is written independently of the processor's own
// series key on purpose: the property must hold for any router that keeps a
// series together, not only for one that hashes the way we do.
func streamID(res pcommon.Resource, sc pcommon.InstrumentationScope, m pmetric.Metric, attrs pcommon.Map) string {
	var sb strings.Builder
	canonicalMap(&sb, res.Attributes())
	fmt.Fprintf(&sb, "|%q|%q|", sc.Name(), sc.Version())
	canonicalMap(&sb, sc.Attributes())
	fmt.Fprintf(&sb, "|%q|", m.Name())
	canonicalMap(&sb, attrs)
	return sb.String()
}

// resourceID is the routing key of `routing_key: resource`: all metrics of a
// resource go to the same instance.
func resourceID(res pcommon.Resource, _ pcommon.InstrumentationScope, _ pmetric.Metric, _ pcommon.Map) string {
	var sb strings.Builder
	canonicalMap(&sb, res.Attributes())
	return sb.String()
}

type routeKey func(pcommon.Resource, pcommon.InstrumentationScope, pmetric.Metric, pcommon.Map) string

// instanceOf picks one of n instances by hashing a routing key, like the
// load-balancing exporter's ring does for a fixed set of backends.
func instanceOf(key string, n int) int {
	h := fnv.New64a()
	h.Write([]byte(key))
	return int(h.Sum64() % uint64(n))
}

// split returns one copy of md per instance holding only the datapoints
// routed to it; resources, scopes and metrics left empty are dropped, as a
// router would not send them.
func split(md pmetric.Metrics, n int, key routeKey) []pmetric.Metrics {
	out := make([]pmetric.Metrics, n)
	for i := range out {
		out[i] = pmetric.NewMetrics()
		md.CopyTo(out[i])
		out[i].ResourceMetrics().RemoveIf(func(rm pmetric.ResourceMetrics) bool {
			rm.ScopeMetrics().RemoveIf(func(sm pmetric.ScopeMetrics) bool {
				sm.Metrics().RemoveIf(func(m pmetric.Metric) bool {
					other := func(attrs pcommon.Map) bool {
						return instanceOf(key(rm.Resource(), sm.Scope(), m, attrs), n) != i
					}
					switch m.Type() {
					case pmetric.MetricTypeGauge:
						m.Gauge().DataPoints().RemoveIf(func(dp pmetric.NumberDataPoint) bool { return other(dp.Attributes()) })
						return m.Gauge().DataPoints().Len() == 0
					case pmetric.MetricTypeSum:
						m.Sum().DataPoints().RemoveIf(func(dp pmetric.NumberDataPoint) bool { return other(dp.Attributes()) })
						return m.Sum().DataPoints().Len() == 0
					case pmetric.MetricTypeHistogram:
						m.Histogram().DataPoints().RemoveIf(func(dp pmetric.HistogramDataPoint) bool { return other(dp.Attributes()) })
						return m.Histogram().DataPoints().Len() == 0
					}
					panic("split: metric type " + m.Type().String() + " not in the workload")
				})
				return sm.Metrics().Len() == 0
			})
			return rm.ScopeMetrics().Len() == 0
		})
	}
	return out
}

// forEachPoint calls f for every gauge, sum and histogram datapoint of md.
func forEachPoint(md pmetric.Metrics, f func(stream string, ts pcommon.Timestamp, attrs pcommon.Map)) {
	for _, rm := range md.ResourceMetrics().All() {
		for _, sm := range rm.ScopeMetrics().All() {
			for _, m := range sm.Metrics().All() {
				visit := func(attrs pcommon.Map, ts pcommon.Timestamp) {
					f(streamID(rm.Resource(), sm.Scope(), m, attrs), ts, attrs)
				}
				switch m.Type() {
				case pmetric.MetricTypeGauge:
					for _, dp := range m.Gauge().DataPoints().All() {
						visit(dp.Attributes(), dp.Timestamp())
					}
				case pmetric.MetricTypeSum:
					for _, dp := range m.Sum().DataPoints().All() {
						visit(dp.Attributes(), dp.Timestamp())
					}
				case pmetric.MetricTypeHistogram:
					for _, dp := range m.Histogram().DataPoints().All() {
						visit(dp.Attributes(), dp.Timestamp())
					}
				}
			}
		}
	}
}

// verdicts maps every datapoint (stream and timestamp) to its anomaly.*
// attributes, rendered exactly (doubles as their bits: equal means equal).
type verdicts map[string]string

func (v verdicts) add(t *testing.T, md pmetric.Metrics) {
	forEachPoint(md, func(stream string, ts pcommon.Timestamp, attrs pcommon.Map) {
		var sb strings.Builder
		keys := []string{}
		for k := range attrs.All() {
			if strings.HasPrefix(k, "anomaly.") {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			val, _ := attrs.Get(k)
			if val.Type() == pcommon.ValueTypeDouble {
				fmt.Fprintf(&sb, "%s=%b ", k, math.Float64bits(val.Double()))
				continue
			}
			fmt.Fprintf(&sb, "%s=%s ", k, val.AsString())
		}
		id := fmt.Sprintf("%s@%d", stream, ts)
		if _, dup := v[id]; dup {
			t.Fatalf("datapoint %s seen twice", id)
		}
		v[id] = sb.String()
	})
}

// counts of a run's verdicts: datapoints scored and flagged.
func (v verdicts) counts() (scored, flagged int) {
	for _, s := range v {
		if strings.Contains(s, "anomaly.score=") {
			scored++
		}
		if strings.Contains(s, "anomaly.detected=true") {
			flagged++
		}
	}
	return scored, flagged
}

func newSplitProcessor(t *testing.T, cfg *Config) (processor.Metrics, *consumertest.MetricsSink) {
	t.Helper()
	return newTestProcessor(t, cfg, processortest.NewNopSettings(metadata.Type))
}

// runSplit feeds batches to one processor and, split by key, to n others,
// and returns each run's verdicts plus the streams each of the n saw.
func runSplit(t *testing.T, cfg func() *Config, batches []pmetric.Metrics, n int, key routeKey) (one, many verdicts, streams []map[string]bool) {
	t.Helper()
	single, singleSink := newSplitProcessor(t, cfg())
	parts := make([]processor.Metrics, n)
	sinks := make([]*consumertest.MetricsSink, n)
	streams = make([]map[string]bool, n)
	for i := range parts {
		parts[i], sinks[i] = newSplitProcessor(t, cfg())
		streams[i] = map[string]bool{}
	}
	ctx := context.Background()
	for _, md := range batches {
		// Split first: the processor writes into the batch it is given.
		pieces := split(md, n, key)
		require.NoError(t, single.ConsumeMetrics(ctx, md))
		for i, piece := range pieces {
			if piece.DataPointCount() == 0 {
				continue
			}
			forEachPoint(piece, func(stream string, _ pcommon.Timestamp, _ pcommon.Map) { streams[i][stream] = true })
			require.NoError(t, parts[i].ConsumeMetrics(ctx, piece))
		}
	}
	one, many = verdicts{}, verdicts{}
	for _, md := range singleSink.AllMetrics() {
		one.add(t, md)
	}
	for _, s := range sinks {
		for _, md := range s.AllMetrics() {
			many.add(t, md)
		}
	}
	return one, many, streams
}

// assertSameVerdicts fails with the first few datapoints whose verdicts
// differ, so that a failure shows what changed.
func assertSameVerdicts(t *testing.T, one, many verdicts) {
	t.Helper()
	require.Equal(t, len(one), len(many), "datapoints out of one instance vs. of the split instances")
	var diffs []string
	for id, v := range one {
		if w, ok := many[id]; !ok || w != v {
			diffs = append(diffs, fmt.Sprintf("%s\n  one:   %s\n  split: %s", id, v, w))
		}
	}
	slices.Sort(diffs)
	if len(diffs) > 0 {
		t.Errorf("%d of %d datapoints differ, e.g.\n%s", len(diffs), len(one), strings.Join(diffs[:min(3, len(diffs))], "\n"))
	}
}

// splitWorkload is steps batches from 6 resources (3 services x 2 hosts),
// two scopes on some, gauges (double and int), monotonic and non-monotonic
// cumulative sums and a cumulative histogram, with per-series levels and
// noise and spikes scattered over the second half. Deterministic.
func splitWorkload(steps int) []pmetric.Metrics {
	rng := rand.New(rand.NewPCG(6, 2))
	type counter struct{ total float64 }
	counters := map[string]*counter{}
	cum := func(key string, rate float64) float64 {
		c := counters[key]
		if c == nil {
			c = &counter{}
			counters[key] = c
		}
		c.total += rate * 60
		return c.total
	}
	// spike returns a multiplier: mostly 1, now and then a jump, only after
	// every series has warmed up.
	spike := func(step int) float64 {
		if step > 45 && rng.Float64() < 0.01 {
			return 2.5 + rng.Float64()
		}
		return 1
	}
	var out []pmetric.Metrics
	for step := range steps {
		ts := stepTime(step)
		md := pmetric.NewMetrics()
		for svc := range 3 {
			for host := range 2 {
				rm := md.ResourceMetrics().AppendEmpty()
				rm.Resource().Attributes().PutStr("service.name", fmt.Sprintf("svc-%d", svc))
				rm.Resource().Attributes().PutStr("host.name", fmt.Sprintf("host-%d", host))
				base := float64(1 + svc*3 + host)
				sm := rm.ScopeMetrics().AppendEmpty()
				sm.Scope().SetName("app")
				sm.Scope().SetVersion("1.0")

				g := sm.Metrics().AppendEmpty()
				g.SetName("cpu.utilization")
				g.SetEmptyGauge()
				for cpu := range 4 {
					dp := g.Gauge().DataPoints().AppendEmpty()
					dp.Attributes().PutInt("cpu", int64(cpu))
					dp.SetTimestamp(ts)
					dp.SetDoubleValue(math.Min(1, (0.05*base+0.02*float64(cpu)+0.01*rng.NormFloat64())*spike(step)))
				}

				q := sm.Metrics().AppendEmpty()
				q.SetName("queue.depth")
				q.SetEmptyGauge()
				for _, name := range []string{"orders", "emails"} {
					dp := q.Gauge().DataPoints().AppendEmpty()
					dp.Attributes().PutStr("queue", name)
					dp.SetTimestamp(ts)
					dp.SetIntValue(int64(math.Max(0, (20*base+3*rng.NormFloat64())*spike(step))))
				}

				r := sm.Metrics().AppendEmpty()
				r.SetName("http.server.requests")
				rs := r.SetEmptySum()
				rs.SetIsMonotonic(true)
				rs.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
				for _, route := range []string{"/", "/cart", "/pay"} {
					dp := rs.DataPoints().AppendEmpty()
					dp.Attributes().PutStr("http.route", route)
					dp.SetStartTimestamp(stepTime(0))
					dp.SetTimestamp(ts)
					key := fmt.Sprintf("%d/%d%s", svc, host, route)
					dp.SetDoubleValue(cum(key, math.Max(0, (5*base+0.5*rng.NormFloat64())*spike(step))))
				}

				c := sm.Metrics().AppendEmpty()
				c.SetName("db.connections.open")
				cs := c.SetEmptySum()
				cs.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
				dp := cs.DataPoints().AppendEmpty()
				dp.SetStartTimestamp(stepTime(0))
				dp.SetTimestamp(ts)
				dp.SetIntValue(int64((50 + 2*rng.NormFloat64()) * spike(step)))

				if host == 0 {
					// A second scope with the same metric name: a series of
					// its own, which the router must keep apart as well.
					rt := rm.ScopeMetrics().AppendEmpty()
					rt.Scope().SetName("runtime")
					h := rt.Metrics().AppendEmpty()
					h.SetName("http.server.requests")
					hs := h.SetEmptyHistogram()
					hs.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
					hdp := hs.DataPoints().AppendEmpty()
					hdp.SetStartTimestamp(stepTime(0))
					hdp.SetTimestamp(ts)
					n := uint64(60 * 10 * (step + 1))
					hdp.SetCount(n)
					hdp.SetSum(cum(fmt.Sprintf("%d/%d/h", svc, host), 0.2*10*spike(step)))
					hdp.ExplicitBounds().FromRaw([]float64{0.1, 1})
					hdp.BucketCounts().FromRaw([]uint64{n / 2, n / 2, 0})
				}
			}
		}
		out = append(out, md)
	}
	return out
}

func TestSplitByStreamGivesTheSameVerdicts(t *testing.T) {
	batches := splitWorkload(120)
	total := 0
	for _, md := range batches {
		total += md.DataPointCount()
	}
	one, many, streams := runSplit(t, func() *Config { return createDefaultConfig().(*Config) }, batches, 2, streamID)

	require.Len(t, one, total, "every datapoint comes out of the single instance")
	assertSameVerdicts(t, one, many)
	// Both instances did real work, and no series went to both.
	for i, s := range streams {
		assert.Greater(t, len(s), 10, "instance %d received %d series", i, len(s))
		for id := range s {
			assert.False(t, streams[1-i][id], "series %s reached both instances", id)
		}
	}
	// The comparison is not between two empty answers: most points are
	// scored and some flagged.
	scored, flagged := one.counts()
	assert.Greater(t, scored, total/2)
	assert.Greater(t, flagged, 5)
	t.Logf("%d datapoints, %d series (%d + %d), %d scored, %d flagged", total, len(streams[0])+len(streams[1]), len(streams[0]), len(streams[1]), scored, flagged)
}

// hostModelConfig is a processor configuration with an entity model joining
// each host's CPU and memory, written as a user would in YAML.
func hostModelConfig(t *testing.T) func() *Config {
	return func() *Config {
		cfg := createDefaultConfig().(*Config)
		require.NoError(t, confmapFrom(map[string]any{
			"models": []any{map[string]any{
				"name":   "host",
				"entity": map[string]any{"resource_attributes": []any{"host.name"}},
				"features": []any{
					map[string]any{"name": "cpu", "metric": "system.cpu.utilization", "where_not": map[string]any{"state": "idle"}, "per": "cpu"},
					map[string]any{"name": "memory", "metric": "system.memory.utilization", "where": map[string]any{"state": "used"}},
				},
				"staleness": "2m",
			}},
		}).Unmarshal(cfg))
		require.NoError(t, cfg.Validate())
		return cfg
	}
}

// hostWorkload is steps scrapes of 8 hosts' CPU (2 cpus x 3 states) and
// memory, with bursts of CPU or memory on some hosts late in the run.
func hostWorkload(steps int) []pmetric.Metrics {
	rng := rand.New(rand.NewPCG(8, 1))
	var out []pmetric.Metrics
	for step := range steps {
		md := pmetric.NewMetrics()
		ts := stepTime(step)
		for h := range 8 {
			busy := 0.2 + 0.05*float64(h) + 0.02*rng.NormFloat64()
			used := 0.4 + 0.03*float64(h) + 0.01*rng.NormFloat64()
			if step > 50 && rng.Float64() < 0.03 {
				if rng.IntN(2) == 0 {
					busy = 0.95
				} else {
					used = 0.97
				}
			}
			rm := md.ResourceMetrics().AppendEmpty()
			rm.Resource().Attributes().PutStr("host.name", fmt.Sprintf("node-%d", h))
			ms := rm.ScopeMetrics().AppendEmpty().Metrics()
			cpu := ms.AppendEmpty()
			cpu.SetName("system.cpu.utilization")
			cdps := cpu.SetEmptyGauge().DataPoints()
			for c := range 2 {
				for state, v := range map[string]float64{"user": busy * 0.7, "system": busy * 0.3, "idle": 1 - busy} {
					dp := cdps.AppendEmpty()
					dp.Attributes().PutStr("cpu", fmt.Sprintf("cpu%d", c))
					dp.Attributes().PutStr("state", state)
					dp.SetTimestamp(ts)
					dp.SetDoubleValue(v)
				}
			}
			// Map order above is random; order within a batch must not
			// matter to the verdicts, but keep the input deterministic.
			cdps.Sort(func(a, b pmetric.NumberDataPoint) bool {
				sa, _ := a.Attributes().Get("state")
				sb, _ := b.Attributes().Get("state")
				ca, _ := a.Attributes().Get("cpu")
				cb, _ := b.Attributes().Get("cpu")
				return ca.Str()+sa.Str() < cb.Str()+sb.Str()
			})
			mem := ms.AppendEmpty()
			mem.SetName("system.memory.utilization")
			mdps := mem.SetEmptyGauge().DataPoints()
			for _, s := range []struct {
				state string
				v     float64
			}{{"used", used}, {"free", 1 - used}} {
				dp := mdps.AppendEmpty()
				dp.Attributes().PutStr("state", s.state)
				dp.SetTimestamp(ts)
				dp.SetDoubleValue(s.v)
			}
		}
		out = append(out, md)
	}
	return out
}

func TestSplitEntityModelByResourceGivesTheSameVerdicts(t *testing.T) {
	batches := hostWorkload(120)
	one, many, streams := runSplit(t, hostModelConfig(t), batches, 2, resourceID)
	assertSameVerdicts(t, one, many)
	for i, s := range streams {
		assert.NotEmpty(t, s, "instance %d received no series", i)
	}
	modelled := 0
	for _, v := range one {
		if strings.Contains(v, "anomaly.model=host") {
			modelled++
		}
	}
	scored, flagged := one.counts()
	assert.Greater(t, modelled, 1000, "the entity model scored the joined datapoints")
	assert.Greater(t, flagged, 5)
	t.Logf("%d datapoints, %d scored (%d by the host model), %d flagged", len(one), scored, modelled, flagged)
}

// The reason the scale-out README asks for resource routing with entity
// models: routed by stream, a host's CPU and memory land on different
// instances, neither has the whole vector, and the verdicts change.
func TestSplitEntityModelByStreamDiffers(t *testing.T) {
	batches := hostWorkload(120)
	one, many, _ := runSplit(t, hostModelConfig(t), batches, 2, streamID)
	require.Equal(t, len(one), len(many))
	differ := 0
	for id, v := range one {
		if many[id] != v {
			differ++
		}
	}
	assert.Greater(t, differ, len(one)/10, "stream routing should break the joined model")
}
