package anomalyeventsconnector

import (
	"context"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/otel-iforest/iforest/connector/internal/metadata"
	"github.com/otel-iforest/iforest/internal/verdict"
)

// eventKind is one of the log events the connector emits.
type eventKind int

const (
	eventStarted eventKind = iota
	eventDetected
	eventEnded
	numEventKinds
)

// events describes each kind: its EventName, severity and the value of the
// `event` attribute of the self-telemetry.
var events = [numEventKinds]struct {
	name         string
	severity     plog.SeverityNumber
	severityText string
	label        string
}{
	eventStarted:  {"anomaly.started", plog.SeverityNumberWarn, "WARN", "started"},
	eventDetected: {"anomaly.detected", plog.SeverityNumberWarn, "WARN", "detected"},
	eventEnded:    {"anomaly.ended", plog.SeverityNumberInfo, "INFO", "ended"},
}

// metricNameKey is the log attribute that names the source metric.
const metricNameKey = "metric.name"

// keys holds the attribute names derived from the configured prefix: the
// processor's verdict attributes, read from datapoints (and copied to
// records when present), and the connector's own.
type keys struct {
	verdict.Names
	value, count                         string
	seriesCount, series, seriesTruncated string // entity incidents
	rate                                 string // the rate metric's name
}

func newKeys(prefix string) keys {
	return keys{
		Names:           verdict.NewNames(prefix),
		value:           prefix + "value",
		count:           prefix + "count",
		seriesCount:     prefix + "series.count",
		series:          prefix + "series",
		seriesTruncated: prefix + "series.truncated",
		rate:            prefix + "rate",
	}
}

// anomalyEvents is the metrics -> logs connector.
type anomalyEvents struct {
	cfg       *Config
	keys      keys
	next      consumer.Logs
	telemetry *metadata.TelemetryBuilder
	logger    *zap.Logger
	now       func() time.Time
	trust     trust
	groups    *grouper // nil without group_by
	// Precomputed attribute options of the self-telemetry.
	eventAttrs  [numEventKinds]metric.AddOption
	reasonAttrs [numReasons]metric.AddOption

	// The ticker that sends entity incidents whose entity's data stopped
	// (group_by only).
	stop, done chan struct{}
}

var _ consumer.Metrics = (*anomalyEvents)(nil)

func newConnector(set component.TelemetrySettings, name string, cfg *Config, next consumer.Logs, ledger *verdict.Ledger) (*anomalyEvents, error) {
	tb, err := metadata.NewTelemetryBuilder(set)
	if err != nil {
		return nil, err
	}
	c := &anomalyEvents{
		cfg: cfg, keys: newKeys(cfg.AttributePrefix), next: next, telemetry: tb, logger: set.Logger, now: time.Now,
		trust:       newTrust(cfg.AcceptRemoteVerdicts, ledger, name),
		reasonAttrs: reasonOptions(),
	}
	for k := range c.eventAttrs {
		c.eventAttrs[k] = metric.WithAttributeSet(attribute.NewSet(attribute.String("event", events[k].label)))
	}
	if len(cfg.GroupBy) > 0 {
		c.groups = newGrouper(cfg)
		if err := tb.RegisterConnectorAnomalyeventsGroupsOpenCallback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(int64(c.groups.len()))
			return nil
		}); err != nil {
			return nil, err
		}
	}
	if err := registerLedgerEvicted(tb, ledger); err != nil {
		return nil, err
	}
	return c, nil
}

func registerLedgerEvicted(tb *metadata.TelemetryBuilder, ledger *verdict.Ledger) error {
	return tb.RegisterConnectorAnomalyeventsLedgerEvictedCallback(func(_ context.Context, o metric.Int64Observer) error {
		o.Observe(ledger.Evicted())
		return nil
	})
}

// tickEvery is how often the connector looks for entity incidents due by
// the collector's clock.
const tickEvery = time.Second

func (c *anomalyEvents) Start(context.Context, component.Host) error {
	if c.groups != nil {
		c.stop, c.done = make(chan struct{}), make(chan struct{})
		go c.tick(tickEvery)
	}
	return nil
}

func (c *anomalyEvents) Shutdown(ctx context.Context) error {
	if c.stop != nil {
		close(c.stop)
		<-c.done
		c.stop = nil
		// A page not sent yet is sent now rather than lost.
		c.flushGroups(ctx, true)
	}
	c.telemetry.Shutdown()
	return nil
}

func (c *anomalyEvents) tick(every time.Duration) {
	defer close(c.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.flushGroups(context.Background(), false)
		}
	}
}

// flushGroups sends the started events of entity incidents due by the
// collector's clock (all pending ones with all).
func (c *anomalyEvents) flushGroups(ctx context.Context, all bool) {
	o := output{now: c.now}
	c.groups.flushWall(&o, &c.keys, all)
	if !o.has {
		return
	}
	if err := c.next.ConsumeLogs(ctx, o.logs); err != nil {
		c.logger.Warn("could not hand entity incident events to the logs pipeline", zap.Error(err))
		return
	}
	c.countEmitted(ctx, &o)
}

// Capabilities: the connector only reads the metrics it receives.
func (c *anomalyEvents) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: false}
}

// ConsumeMetrics emits the log events found in md, grouped by md's
// resources and scopes (entity incidents by entity), in one call to the
// next consumer. Nothing is sent when md holds no events.
func (c *anomalyEvents) ConsumeMetrics(ctx context.Context, md pmetric.Metrics) error {
	b := batch{c: c, output: output{now: c.now}, grouping: c.groups != nil}
	for _, rm := range md.ResourceMetrics().All() {
		b.setResource(rm)
		for _, sm := range rm.ScopeMetrics().All() {
			b.setScope(sm)
			for _, m := range sm.Metrics().All() {
				b.metric(m)
			}
		}
		b.endResource()
	}
	if c.groups != nil {
		c.groups.apply(&b)
		if b.evicted > 0 {
			c.telemetry.ConnectorAnomalyeventsGroupsEvicted.Add(ctx, b.evicted)
		}
	}
	for r, n := range b.rejected {
		if n > 0 {
			c.telemetry.ConnectorAnomalyeventsVerdictsRejected.Add(ctx, n, c.reasonAttrs[r])
		}
	}
	if !b.has {
		return nil
	}
	if err := c.next.ConsumeLogs(ctx, b.logs); err != nil {
		return err
	}
	c.countEmitted(ctx, &b.output)
	return nil
}

func (c *anomalyEvents) countEmitted(ctx context.Context, o *output) {
	for k, n := range o.counts {
		if n > 0 {
			c.telemetry.ConnectorAnomalyeventsEventsEmitted.Add(ctx, n, c.eventAttrs[k])
		}
	}
}

// output is the logs being built for one call to the next consumer. The
// Logs are made with the first record.
type output struct {
	now  func() time.Time
	has  bool
	logs plog.Logs
	// observed is the ObservedTimestamp of every record: the time the
	// connector saw the verdicts.
	observed pcommon.Timestamp
	counts   [numEventKinds]int64
}

func (o *output) ensure() {
	if !o.has {
		o.logs = plog.NewLogs()
		o.observed = pcommon.NewTimestampFromTime(o.now())
		o.has = true
	}
}

// newRecord starts a record of kind in sl.
func (o *output) newRecord(sl plog.ScopeLogs, kind eventKind, ts pcommon.Timestamp) plog.LogRecord {
	lr := sl.LogRecords().AppendEmpty()
	lr.SetTimestamp(ts)
	lr.SetObservedTimestamp(o.observed)
	lr.SetEventName(events[kind].name)
	lr.SetSeverityNumber(events[kind].severity)
	lr.SetSeverityText(events[kind].severityText)
	o.counts[kind]++
	return lr
}

// batch builds the logs of one ConsumeMetrics call. ResourceLogs and
// ScopeLogs are created when their first record is, so no empty ones are
// sent.
type batch struct {
	output
	c        *anomalyEvents
	rejected rejections

	rm             pmetric.ResourceMetrics
	sm             pmetric.ScopeMetrics
	rl             plog.ResourceLogs
	sl             plog.ScopeLogs
	haveRL, haveSL bool

	// Entity incidents (group_by): the current resource's entity and
	// latest datapoint time, and what the batch brings to the groups.
	grouping bool
	entity   entity
	maxTS    int64
	trans    []transition
	clocks   []entityClock
	evicted  int64
}

func (b *batch) setResource(rm pmetric.ResourceMetrics) {
	b.rm, b.haveRL, b.haveSL = rm, false, false
	if b.grouping {
		b.entity = b.c.groups.entityOf(rm.Resource().Attributes())
		b.maxTS = 0
	}
}

func (b *batch) endResource() {
	if b.grouping && b.entity.ok && b.maxTS > 0 {
		b.clocks = append(b.clocks, entityClock{key: b.entity.key, ts: b.maxTS})
	}
}

func (b *batch) setScope(sm pmetric.ScopeMetrics) {
	b.sm, b.haveSL = sm, false
}

// newSeriesRecord appends a record of kind to the ScopeLogs that mirrors the
// current source resource and scope, creating them on first use.
func (b *batch) newSeriesRecord(kind eventKind, ts pcommon.Timestamp) plog.LogRecord {
	b.ensure()
	if !b.haveRL {
		b.rl = b.logs.ResourceLogs().AppendEmpty()
		b.rm.Resource().CopyTo(b.rl.Resource())
		b.rl.SetSchemaUrl(b.rm.SchemaUrl())
		b.haveRL = true
	}
	if !b.haveSL {
		b.sl = b.rl.ScopeLogs().AppendEmpty()
		b.sm.Scope().CopyTo(b.sl.Scope())
		b.sl.SetSchemaUrl(b.sm.SchemaUrl())
		b.haveSL = true
	}
	return b.newRecord(b.sl, kind, ts)
}

// point is what the connector needs of a datapoint of any type.
type point struct {
	attrs pcommon.Map
	ts    pcommon.Timestamp
	// value is the number shown and recorded as <prefix>value: the value of
	// a number datapoint, the mean of a histogram or summary.
	value    float64
	hasValue bool
	// count is the observation count of a histogram or summary.
	count    uint64
	hasCount bool
}

func (b *batch) metric(m pmetric.Metric) {
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		b.numbers(m, m.Gauge().DataPoints())
	case pmetric.MetricTypeSum:
		b.numbers(m, m.Sum().DataPoints())
	case pmetric.MetricTypeHistogram:
		for _, dp := range m.Histogram().DataPoints().All() {
			if b.wanted(dp.Attributes(), dp.Timestamp()) {
				p := point{attrs: dp.Attributes(), ts: dp.Timestamp()}
				p.setCountMean(dp.Count(), dp.Sum(), dp.HasSum())
				b.emit(m, p)
			}
		}
	case pmetric.MetricTypeExponentialHistogram:
		for _, dp := range m.ExponentialHistogram().DataPoints().All() {
			if b.wanted(dp.Attributes(), dp.Timestamp()) {
				p := point{attrs: dp.Attributes(), ts: dp.Timestamp()}
				p.setCountMean(dp.Count(), dp.Sum(), dp.HasSum())
				b.emit(m, p)
			}
		}
	case pmetric.MetricTypeSummary:
		for _, dp := range m.Summary().DataPoints().All() {
			if b.wanted(dp.Attributes(), dp.Timestamp()) {
				p := point{attrs: dp.Attributes(), ts: dp.Timestamp()}
				p.setCountMean(dp.Count(), dp.Sum(), true)
				b.emit(m, p)
			}
		}
	}
}

func (b *batch) numbers(m pmetric.Metric, dps pmetric.NumberDataPointSlice) {
	for _, dp := range dps.All() {
		if !b.wanted(dp.Attributes(), dp.Timestamp()) {
			continue
		}
		p := point{attrs: dp.Attributes(), ts: dp.Timestamp()}
		switch dp.ValueType() {
		case pmetric.NumberDataPointValueTypeDouble:
			p.value, p.hasValue = dp.DoubleValue(), true
		case pmetric.NumberDataPointValueTypeInt:
			p.value, p.hasValue = float64(dp.IntValue()), true
		}
		b.emit(m, p)
	}
}

func (p *point) setCountMean(count uint64, sum float64, hasSum bool) {
	p.count, p.hasCount = count, true
	if hasSum && count > 0 {
		p.value, p.hasValue = sum/float64(count), true
	}
}

// wanted is the fast test run on every datapoint: does it carry an incident
// transition, or (with emit_datapoints) a positive verdict? With group_by
// it also keeps the resource's latest datapoint time: the entity's clock.
func (b *batch) wanted(attrs pcommon.Map, ts pcommon.Timestamp) bool {
	if b.grouping && int64(ts) > b.maxTS {
		b.maxTS = int64(ts)
	}
	k := &b.c.keys
	if v, ok := attrs.Get(k.Incident); ok && v.Type() == pcommon.ValueTypeStr {
		if s := v.Str(); s == verdict.Started || s == verdict.Ended {
			return true
		}
	}
	return b.c.cfg.EmitDatapoints && isDetected(attrs, k.Detected)
}

func isDetected(attrs pcommon.Map, key string) bool {
	v, ok := attrs.Get(key)
	return ok && v.Type() == pcommon.ValueTypeBool && v.Bool()
}

// emit writes the records of one datapoint that passed wanted: started,
// detected, ended, in that order, each if the connector takes the verdict
// (trust.go).
func (b *batch) emit(m pmetric.Metric, p point) {
	k, t := &b.c.keys, &b.c.trust
	var incident string
	if v, ok := p.attrs.Get(k.Incident); ok && v.Type() == pcommon.ValueTypeStr {
		incident = v.Str()
	}
	chk := check(p.attrs, k)
	if incident == verdict.Started {
		if r, ok := t.start(chk); !ok {
			b.rejected[r]++
		} else if !b.group(true, m, p, chk) {
			b.record(eventStarted, m, p)
		}
	}
	if b.c.cfg.EmitDatapoints && isDetected(p.attrs, k.Detected) {
		if r, ok := t.flagged(chk); ok {
			b.record(eventDetected, m, p)
		} else {
			b.rejected[r]++
		}
	}
	if incident == verdict.Ended {
		if r, ok := t.end(chk); !ok {
			b.rejected[r]++
		} else if !b.group(false, m, p, chk) {
			b.record(eventEnded, m, p)
		}
	}
}

// group hands a transition to the entity incidents and reports whether
// they took it: the starts and ends of series whose resource names an
// entity. An end whose start the connector did not group (e.g. it started
// before the connector did) becomes a per-series event after all (see
// grouper.leave).
func (b *batch) group(start bool, m pmetric.Metric, p point, chk checked) bool {
	if !b.grouping || !b.entity.ok || !chk.idOK {
		return false
	}
	k := &b.c.keys
	tr := transition{
		start: start, ts: int64(p.ts), id: chk.id, entity: b.entity,
		rm: b.rm, sm: b.sm, m: m, p: p, score: number(p.attrs, k.Score).v,
	}
	if peak := number(p.attrs, k.IncidentPeak); peak.ok {
		tr.peak = peak.v
	}
	b.trans = append(b.trans, tr)
	return true
}

// recordFrom writes a per-series record of a datapoint of rm and sm after
// the walk, in ResourceLogs and ScopeLogs of its own.
func (b *batch) recordFrom(rm pmetric.ResourceMetrics, sm pmetric.ScopeMetrics, kind eventKind, m pmetric.Metric, p point) {
	b.rm, b.sm, b.haveRL, b.haveSL = rm, sm, false, false
	b.record(kind, m, p)
}

func (b *batch) record(kind eventKind, m pmetric.Metric, p point) {
	c, k := b.c, &b.c.keys
	lr := b.newSeriesRecord(kind, p.ts)
	v := readVerdict(p.attrs, k)
	if kind == eventEnded {
		lr.Body().SetStr(endedBody(m.Name(), p.attrs, k.Prefix, v))
	} else {
		lr.Body().SetStr(anomalousBody(m.Name(), p, k.Prefix, v))
	}

	attrs := lr.Attributes()
	if c.cfg.IncludeMetricAttributes {
		attrs.EnsureCapacity(p.attrs.Len() + 8)
		for key, val := range p.attrs.All() {
			if !strings.HasPrefix(key, k.Prefix) {
				val.CopyTo(attrs.PutEmpty(key))
			}
		}
	}
	attrs.PutStr(metricNameKey, m.Name())
	if p.hasValue {
		attrs.PutDouble(k.value, p.value)
	}
	if p.hasCount {
		attrs.PutInt(k.count, int64(p.count))
	}
	copyAttr(attrs, p.attrs, k.Score)
	copyAttr(attrs, p.attrs, k.Threshold)
	copyAttr(attrs, p.attrs, k.ExpectedMin)
	copyAttr(attrs, p.attrs, k.ExpectedMax)
	copyAttr(attrs, p.attrs, k.TopFeature)
	copyAttr(attrs, p.attrs, k.Contributions)
	copyAttr(attrs, p.attrs, k.Model)
	copyAttr(attrs, p.attrs, k.IncidentID)
	if kind == eventEnded {
		copyAttr(attrs, p.attrs, k.IncidentDuration)
		copyAttr(attrs, p.attrs, k.IncidentPeak)
	}
}

// copyAttr copies the attribute key of from to to, if from has it.
func copyAttr(to, from pcommon.Map, key string) {
	if v, ok := from.Get(key); ok {
		v.CopyTo(to.PutEmpty(key))
	}
}

// opt is an optional number read from a datapoint attribute.
type opt struct {
	v  float64
	ok bool
}

// verdictView is the part of the processor's attributes that the body
// shows.
type verdictView struct {
	score, threshold, expectedMin, expectedMax opt
	duration, peak                             opt
	topFeature, contributions, model           string
}

func readVerdict(attrs pcommon.Map, k *keys) verdictView {
	v := verdictView{
		score:       number(attrs, k.Score),
		threshold:   number(attrs, k.Threshold),
		expectedMin: number(attrs, k.ExpectedMin),
		expectedMax: number(attrs, k.ExpectedMax),
		duration:    number(attrs, k.IncidentDuration),
		peak:        number(attrs, k.IncidentPeak),
	}
	if tf, ok := attrs.Get(k.TopFeature); ok {
		v.topFeature = tf.AsString()
	}
	if c, ok := attrs.Get(k.Contributions); ok {
		v.contributions = c.AsString()
	}
	if m, ok := attrs.Get(k.Model); ok {
		v.model = m.AsString()
	}
	return v
}

// number reads a double attribute; an int is accepted too.
func number(attrs pcommon.Map, key string) opt {
	v, ok := attrs.Get(key)
	if !ok {
		return opt{}
	}
	switch v.Type() {
	case pcommon.ValueTypeDouble:
		return opt{v.Double(), true}
	case pcommon.ValueTypeInt:
		return opt{float64(v.Int()), true}
	}
	return opt{}
}
