package anomalyeventsconnector

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/otel-iforest/iforest/connector/internal/metadata"
	"github.com/otel-iforest/iforest/internal/verdict"
)

// The anomaly rate per entity (the metrics -> metrics connector): for each
// entity and each rate.interval of datapoint time, the fraction of the
// entity's scored datapoints that were flagged, as a gauge `anomaly.rate`
// whose resource is the entity (its group_by attributes; without group_by,
// the whole resource). With one point per series per interval this is the
// fraction of the entity's series flagged in that interval, Netdata's node
// anomaly rate; with more it is weighted by time. Counting points rather
// than distinct series keeps two counters per entity instead of a set of
// series.
//
// An entity's interval is reported when a datapoint of a later interval
// arrives for it: datapoint time, so that replayed and delayed data give
// the rates it had. The last interval of an entity whose data stopped is
// reported once other entities' data is a whole interval past it and it
// was silent for an interval of the collector's clock, or at shutdown if
// it is over by then; a point of an interval already reported is counted
// as late and left out. A flagged point counts as flagged only if the
// connector takes its verdict (trust.go); otherwise it counts as scored.

type anomalyRate struct {
	cfg       *Config
	keys      keys
	next      consumer.Metrics
	telemetry *metadata.TelemetryBuilder
	trust     trust
	hasher    entityHasher
	interval  int64
	now       func() time.Time

	mu       sync.Mutex
	entities map[uint64]*rateEntity
	newest   int64 // the latest interval seen, of any entity
	swept    int64 // the interval of the last sweep for idle entities

	reasonAttrs [numReasons]metric.AddOption
	dropAttrs   [numDrops]metric.AddOption
}

// Why a scored datapoint was left out (drop_reason).
const (
	dropOverLimit = iota
	dropLate
	numDrops
)

type rateEntity struct {
	attrs           pcommon.Map
	start           int64 // the open interval's start (unix ns)
	scored, flagged int64
	sent            bool  // the interval at start was sent: its points are late
	seen            int64 // wall time (unix ns) of the last batch with its points
}

var _ consumer.Metrics = (*anomalyRate)(nil)

func newRateConnector(set component.TelemetrySettings, cfg *Config, next consumer.Metrics, ledger *verdict.Ledger) (*anomalyRate, error) {
	tb, err := metadata.NewTelemetryBuilder(set)
	if err != nil {
		return nil, err
	}
	c := &anomalyRate{
		cfg: cfg, keys: newKeys(cfg.AttributePrefix), next: next, telemetry: tb,
		// Only flagged points are checked, and those are not claimed:
		// no reader bit needed.
		trust:       trust{remote: cfg.AcceptRemoteVerdicts, ledger: ledger},
		hasher:      newEntityHasher(cfg.GroupBy),
		interval:    int64(cfg.Rate.Interval),
		now:         time.Now,
		entities:    map[uint64]*rateEntity{},
		reasonAttrs: reasonOptions(),
	}
	for i, r := range [numDrops]string{"over_limit", "late"} {
		c.dropAttrs[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", r)))
	}
	if err := tb.RegisterConnectorAnomalyeventsRateEntitiesCallback(func(_ context.Context, o metric.Int64Observer) error {
		c.mu.Lock()
		n := len(c.entities)
		c.mu.Unlock()
		o.Observe(int64(n))
		return nil
	}); err != nil {
		return nil, err
	}
	if err := registerLedgerEvicted(tb, ledger); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *anomalyRate) Start(context.Context, component.Host) error { return nil }

// Shutdown sends the open intervals: the collector shuts its pipelines
// down from the receivers on, so the rate's consumers still run.
func (c *anomalyRate) Shutdown(ctx context.Context) error {
	err := c.flush(ctx)
	c.telemetry.Shutdown()
	return err
}

// Capabilities: the connector only reads the metrics it receives.
func (c *anomalyRate) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: false}
}

// rateKey is one entity's interval.
type rateKey struct {
	entity uint64
	start  int64
}

type tally struct {
	scored, flagged int64
	resource        pcommon.Map // a resource of the entity, for its attributes
}

// ConsumeMetrics counts md's scored datapoints per entity and interval and
// sends the rates of the intervals it completed, in one call.
func (c *anomalyRate) ConsumeMetrics(ctx context.Context, md pmetric.Metrics) error {
	counts := map[rateKey]*tally{}
	order := map[uint64]int{} // entities in the order the batch has them
	var rejected rejections
	now := c.now().UnixNano()
	for _, rm := range md.ResourceMetrics().All() {
		e := c.hasher.of(rm.Resource().Attributes())
		if !e.ok {
			continue
		}
		if _, ok := order[e.key]; !ok {
			order[e.key] = len(order)
		}
		see := func(attrs pcommon.Map, ts pcommon.Timestamp) {
			s := number(attrs, c.keys.Score)
			if !s.ok {
				return // not scored
			}
			if !validScore(s.v) {
				rejected[reasonMalformed]++
				return
			}
			t := int64(ts)
			if t <= 0 {
				t = now
			}
			key := rateKey{entity: e.key, start: t - t%c.interval}
			n := counts[key]
			if n == nil {
				n = &tally{resource: rm.Resource().Attributes()}
				counts[key] = n
			}
			n.scored++
			if isDetected(attrs, c.keys.Detected) {
				if r, ok := c.trust.flagged(check(attrs, &c.keys)); ok {
					n.flagged++
				} else {
					rejected[r]++
				}
			}
		}
		for _, sm := range rm.ScopeMetrics().All() {
			for _, m := range sm.Metrics().All() {
				forEachPoint(m, see)
			}
		}
	}
	for r, n := range rejected {
		if n > 0 {
			c.telemetry.ConnectorAnomalyeventsVerdictsRejected.Add(ctx, n, c.reasonAttrs[r])
		}
	}
	if len(counts) == 0 {
		return nil
	}
	out, drops := c.fold(counts, order, now)
	for i, n := range drops {
		if n > 0 {
			c.telemetry.ConnectorAnomalyeventsRateDatapointsDropped.Add(ctx, n, c.dropAttrs[i])
		}
	}
	if out.ResourceMetrics().Len() == 0 {
		return nil
	}
	return c.next.ConsumeMetrics(ctx, out)
}

// fold adds a batch's counts to the entities, interval by interval, and
// returns the rates of the intervals that ended.
func (c *anomalyRate) fold(counts map[rateKey]*tally, order map[uint64]int, now int64) (pmetric.Metrics, [numDrops]int64) {
	keys := make([]rateKey, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b rateKey) int {
		return cmp.Or(cmp.Compare(order[a.entity], order[b.entity]), cmp.Compare(a.start, b.start))
	})
	o := rateOut{md: pmetric.NewMetrics()}
	var drops [numDrops]int64

	c.mu.Lock()
	defer c.mu.Unlock()
	newest := c.newest
	for _, k := range keys {
		n := counts[k]
		c.newest = max(c.newest, k.start)
		ent := c.entities[k.entity]
		if ent == nil {
			if k.start < c.swept-2*c.interval {
				// A sweep may have sent and dropped this entity's
				// interval: counting it afresh would send it twice.
				drops[dropLate] += n.scored
				continue
			}
			if len(c.entities) >= c.cfg.Rate.MaxEntities && !c.sweep(&o) {
				drops[dropOverLimit] += n.scored
				continue
			}
			ent = &rateEntity{attrs: pcommon.NewMap(), start: k.start}
			c.hasher.attrs(n.resource, ent.attrs)
			c.entities[k.entity] = ent
		}
		ent.seen = now
		switch {
		case k.start < ent.start, k.start == ent.start && ent.sent:
			drops[dropLate] += n.scored
			continue
		case k.start > ent.start:
			c.emit(&o, k.entity, ent)
			ent.start, ent.sent = k.start, false
		}
		ent.scored += n.scored
		ent.flagged += n.flagged
	}
	if c.newest > newest {
		c.closeStopped(&o, now)
	}
	return o.md, drops
}

// rateOut is the rates being sent, and the datapoints of the entity last
// added to them (an entity's intervals in one batch share its resource).
type rateOut struct {
	md   pmetric.Metrics
	dps  rateSlices
	of   uint64
	have bool
}

// emit adds ent's open interval to o, if it counted anything, and empties
// it (under mu).
func (c *anomalyRate) emit(o *rateOut, key uint64, ent *rateEntity) {
	if ent.scored > 0 {
		if !o.have || o.of != key {
			o.dps, o.of, o.have = c.rateMetric(o.md, ent), key, true
		}
		start, end := pcommon.Timestamp(ent.start), pcommon.Timestamp(ent.start+c.interval)
		for _, p := range []struct {
			dps pmetric.NumberDataPointSlice
			set func(pmetric.NumberDataPoint)
		}{
			{o.dps.rate, func(dp pmetric.NumberDataPoint) { dp.SetDoubleValue(float64(ent.flagged) / float64(ent.scored)) }},
			{o.dps.scored, func(dp pmetric.NumberDataPoint) { dp.SetIntValue(ent.scored) }},
			{o.dps.flagged, func(dp pmetric.NumberDataPoint) { dp.SetIntValue(ent.flagged) }},
		} {
			dp := p.dps.AppendEmpty()
			dp.SetStartTimestamp(start)
			dp.SetTimestamp(end)
			p.set(dp)
		}
	}
	ent.scored, ent.flagged, ent.sent = 0, 0, true
}

// closeStopped sends the open interval of every entity that stopped
// (under mu): other entities' data is a whole interval past it, and it
// sent nothing for longer than an interval of the collector's clock. A
// host that went down has its last interval reported, the one most worth
// seeing; an entity whose clock lags or that replays a backlog keeps
// sending, and is never cut short by one whose clock runs ahead. Points of
// a closed interval arriving later count as late. Run when the newest
// interval moves on: once per interval, not per batch.
func (c *anomalyRate) closeStopped(o *rateOut, now int64) {
	for k, ent := range c.entities {
		if ent.scored > 0 && ent.start < c.newest-c.interval && now-ent.seen > c.interval {
			c.emit(o, k, ent)
		}
	}
}

// sweep drops the entities that reported nothing for two intervals before
// the latest one seen, at most once per interval, and reports whether
// there is room now. An entity's open interval is sent before it goes.
func (c *anomalyRate) sweep(o *rateOut) bool {
	if c.swept != c.newest {
		c.swept = c.newest
		for k, ent := range c.entities {
			if ent.start < c.newest-2*c.interval {
				c.emit(o, k, ent)
				delete(c.entities, k)
			}
		}
	}
	return len(c.entities) < c.cfg.Rate.MaxEntities
}

// flush sends, at shutdown, the open intervals that are over by the
// collector's clock (all of them after a replay of old data). One still
// running is not: the next process would count its rest and send the same
// interval again.
func (c *anomalyRate) flush(ctx context.Context) error {
	o := rateOut{md: pmetric.NewMetrics()}
	now := c.now().UnixNano()
	c.mu.Lock()
	for k, ent := range c.entities {
		if ent.start+c.interval <= now {
			c.emit(&o, k, ent)
		}
	}
	c.mu.Unlock()
	if o.md.ResourceMetrics().Len() == 0 {
		return nil
	}
	return c.next.ConsumeMetrics(ctx, o.md)
}

// rateMetric adds the entity's resource with an anomaly.rate gauge to out.
// rateSlices are the datapoints of an entity's metrics: the rate, and the
// counts it is made of (a summary a person can read at a glance).
type rateSlices struct{ rate, scored, flagged pmetric.NumberDataPointSlice }

func (c *anomalyRate) rateMetric(out pmetric.Metrics, ent *rateEntity) rateSlices {
	rm := out.ResourceMetrics().AppendEmpty()
	ent.attrs.CopyTo(rm.Resource().Attributes())
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName(metadata.ScopeName)
	m := sm.Metrics().AppendEmpty()
	m.SetName(c.keys.rate)
	m.SetUnit("1")
	m.SetDescription("Fraction of the entity's scored datapoints flagged as anomalous in the interval.")
	var s rateSlices
	s.rate = m.SetEmptyGauge().DataPoints()
	count := func(name, desc string) pmetric.NumberDataPointSlice {
		m := sm.Metrics().AppendEmpty()
		m.SetName(name)
		m.SetUnit("{datapoint}")
		m.SetDescription(desc)
		sum := m.SetEmptySum()
		sum.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
		sum.SetIsMonotonic(true)
		return sum.DataPoints()
	}
	s.scored = count(c.keys.Prefix+"scored", "Datapoints of the entity scored by the iforest processor in the interval.")
	s.flagged = count(c.keys.Prefix+"flagged", "Datapoints of the entity flagged as anomalous in the interval.")
	return s
}

// forEachPoint calls fn with the attributes and time of every datapoint of
// m.
func forEachPoint(m pmetric.Metric, fn func(pcommon.Map, pcommon.Timestamp)) {
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		for _, dp := range m.Gauge().DataPoints().All() {
			fn(dp.Attributes(), dp.Timestamp())
		}
	case pmetric.MetricTypeSum:
		for _, dp := range m.Sum().DataPoints().All() {
			fn(dp.Attributes(), dp.Timestamp())
		}
	case pmetric.MetricTypeHistogram:
		for _, dp := range m.Histogram().DataPoints().All() {
			fn(dp.Attributes(), dp.Timestamp())
		}
	case pmetric.MetricTypeExponentialHistogram:
		for _, dp := range m.ExponentialHistogram().DataPoints().All() {
			fn(dp.Attributes(), dp.Timestamp())
		}
	case pmetric.MetricTypeSummary:
		for _, dp := range m.Summary().DataPoints().All() {
			fn(dp.Attributes(), dp.Timestamp())
		}
	}
}
