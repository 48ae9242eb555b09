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

	"github.com/otel-iforest/iforest/connector/internal/metadata"
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

// Values of the <prefix>incident attribute.
const (
	incidentStarted = "started"
	incidentEnded   = "ended"
)

// metricNameKey is the log attribute that names the source metric.
const metricNameKey = "metric.name"

// keys holds the attribute names derived from the configured prefix, built
// once so that the walk over datapoints does not concatenate strings.
type keys struct {
	prefix string
	// read from datapoints (and copied to records when present)
	score, detected, threshold, expectedMin, expectedMax, topFeature string
	incident, incidentID, incidentDuration, incidentPeak             string
	model, contributions                                             string
	// written by the connector
	value, count string
}

func newKeys(prefix string) keys {
	return keys{
		prefix:           prefix,
		score:            prefix + "score",
		detected:         prefix + "detected",
		threshold:        prefix + "threshold",
		expectedMin:      prefix + "expected.min",
		expectedMax:      prefix + "expected.max",
		topFeature:       prefix + "top_feature",
		model:            prefix + "model",
		contributions:    prefix + "contributions",
		incident:         prefix + "incident",
		incidentID:       prefix + "incident.id",
		incidentDuration: prefix + "incident.duration",
		incidentPeak:     prefix + "incident.peak_score",
		value:            prefix + "value",
		count:            prefix + "count",
	}
}

type anomalyEvents struct {
	cfg       *Config
	keys      keys
	next      consumer.Logs
	telemetry *metadata.TelemetryBuilder
	now       func() time.Time
	// eventAttrs are the precomputed `event` attribute options of the
	// self-telemetry, one per event kind.
	eventAttrs [numEventKinds]metric.AddOption
}

var _ consumer.Metrics = (*anomalyEvents)(nil)

func newConnector(cfg *Config, next consumer.Logs, tb *metadata.TelemetryBuilder, now func() time.Time) *anomalyEvents {
	c := &anomalyEvents{cfg: cfg, keys: newKeys(cfg.AttributePrefix), next: next, telemetry: tb, now: now}
	for k := range c.eventAttrs {
		c.eventAttrs[k] = metric.WithAttributeSet(attribute.NewSet(attribute.String("event", events[k].label)))
	}
	return c
}

func (c *anomalyEvents) Start(context.Context, component.Host) error { return nil }

func (c *anomalyEvents) Shutdown(context.Context) error {
	c.telemetry.Shutdown()
	return nil
}

// Capabilities: the connector only reads the metrics it receives.
func (c *anomalyEvents) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: false}
}

// ConsumeMetrics emits the log events found in md, grouped by md's
// resources and scopes, in one call to the next consumer. Nothing is sent
// when md holds no events.
func (c *anomalyEvents) ConsumeMetrics(ctx context.Context, md pmetric.Metrics) error {
	b := batch{c: c}
	for _, rm := range md.ResourceMetrics().All() {
		b.setResource(rm)
		for _, sm := range rm.ScopeMetrics().All() {
			b.setScope(sm)
			for _, m := range sm.Metrics().All() {
				b.metric(m)
			}
		}
	}
	if !b.started {
		return nil
	}
	if err := c.next.ConsumeLogs(ctx, b.logs); err != nil {
		return err
	}
	for k, n := range b.counts {
		if n > 0 {
			c.telemetry.ConnectorAnomalyeventsEventsEmitted.Add(ctx, n, c.eventAttrs[k])
		}
	}
	return nil
}

// batch builds the logs of one ConsumeMetrics call. ResourceLogs and
// ScopeLogs are created when their first record is, so no empty ones are
// sent.
type batch struct {
	c       *anomalyEvents
	started bool // logs has been created
	logs    plog.Logs
	// observed is the ObservedTimestamp of every record of the batch: the
	// time the connector saw the verdicts.
	observed pcommon.Timestamp
	counts   [numEventKinds]int64

	rm             pmetric.ResourceMetrics
	sm             pmetric.ScopeMetrics
	rl             plog.ResourceLogs
	sl             plog.ScopeLogs
	haveRL, haveSL bool
}

func (b *batch) setResource(rm pmetric.ResourceMetrics) {
	b.rm, b.haveRL, b.haveSL = rm, false, false
}

func (b *batch) setScope(sm pmetric.ScopeMetrics) {
	b.sm, b.haveSL = sm, false
}

// newRecord appends a record to the ScopeLogs that mirrors the current
// source resource and scope, creating them on first use.
func (b *batch) newRecord() plog.LogRecord {
	if !b.started {
		b.logs = plog.NewLogs()
		b.observed = pcommon.NewTimestampFromTime(b.c.now())
		b.started = true
	}
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
	return b.sl.LogRecords().AppendEmpty()
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
			if b.wanted(dp.Attributes()) {
				p := point{attrs: dp.Attributes(), ts: dp.Timestamp()}
				p.setCountMean(dp.Count(), dp.Sum(), dp.HasSum())
				b.emit(m, p)
			}
		}
	case pmetric.MetricTypeExponentialHistogram:
		for _, dp := range m.ExponentialHistogram().DataPoints().All() {
			if b.wanted(dp.Attributes()) {
				p := point{attrs: dp.Attributes(), ts: dp.Timestamp()}
				p.setCountMean(dp.Count(), dp.Sum(), dp.HasSum())
				b.emit(m, p)
			}
		}
	case pmetric.MetricTypeSummary:
		for _, dp := range m.Summary().DataPoints().All() {
			if b.wanted(dp.Attributes()) {
				p := point{attrs: dp.Attributes(), ts: dp.Timestamp()}
				p.setCountMean(dp.Count(), dp.Sum(), true)
				b.emit(m, p)
			}
		}
	}
}

func (b *batch) numbers(m pmetric.Metric, dps pmetric.NumberDataPointSlice) {
	for _, dp := range dps.All() {
		if !b.wanted(dp.Attributes()) {
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
// transition, or (with emit_datapoints) a positive verdict?
func (b *batch) wanted(attrs pcommon.Map) bool {
	k := &b.c.keys
	if v, ok := attrs.Get(k.incident); ok && v.Type() == pcommon.ValueTypeStr {
		if s := v.Str(); s == incidentStarted || s == incidentEnded {
			return true
		}
	}
	return b.c.cfg.EmitDatapoints && isDetected(attrs, k.detected)
}

func isDetected(attrs pcommon.Map, key string) bool {
	v, ok := attrs.Get(key)
	return ok && v.Type() == pcommon.ValueTypeBool && v.Bool()
}

// emit writes the records of one datapoint that passed wanted: started,
// detected, ended, in that order.
func (b *batch) emit(m pmetric.Metric, p point) {
	k := &b.c.keys
	var incident string
	if v, ok := p.attrs.Get(k.incident); ok && v.Type() == pcommon.ValueTypeStr {
		incident = v.Str()
	}
	if incident == incidentStarted {
		b.record(eventStarted, m, p)
	}
	if b.c.cfg.EmitDatapoints && isDetected(p.attrs, k.detected) {
		b.record(eventDetected, m, p)
	}
	if incident == incidentEnded {
		b.record(eventEnded, m, p)
	}
}

func (b *batch) record(kind eventKind, m pmetric.Metric, p point) {
	c, k := b.c, &b.c.keys
	lr := b.newRecord()
	lr.SetTimestamp(p.ts)
	lr.SetObservedTimestamp(b.observed)
	lr.SetEventName(events[kind].name)
	lr.SetSeverityNumber(events[kind].severity)
	lr.SetSeverityText(events[kind].severityText)
	v := readVerdict(p.attrs, k)
	if kind == eventEnded {
		lr.Body().SetStr(endedBody(m.Name(), p.attrs, k.prefix, v))
	} else {
		lr.Body().SetStr(anomalousBody(m.Name(), p, k.prefix, v))
	}

	attrs := lr.Attributes()
	if c.cfg.IncludeMetricAttributes {
		attrs.EnsureCapacity(p.attrs.Len() + 8)
		for key, val := range p.attrs.All() {
			if !strings.HasPrefix(key, k.prefix) {
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
	copyAttr(attrs, p.attrs, k.score)
	copyAttr(attrs, p.attrs, k.threshold)
	copyAttr(attrs, p.attrs, k.expectedMin)
	copyAttr(attrs, p.attrs, k.expectedMax)
	copyAttr(attrs, p.attrs, k.topFeature)
	copyAttr(attrs, p.attrs, k.contributions)
	copyAttr(attrs, p.attrs, k.model)
	copyAttr(attrs, p.attrs, k.incidentID)
	if kind == eventEnded {
		copyAttr(attrs, p.attrs, k.incidentDuration)
		copyAttr(attrs, p.attrs, k.incidentPeak)
	}
	b.counts[kind]++
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

// verdict is the part of the processor's attributes that the body shows.
type verdict struct {
	score, threshold, expectedMin, expectedMax opt
	duration, peak                             opt
	topFeature, contributions, model           string
}

func readVerdict(attrs pcommon.Map, k *keys) verdict {
	v := verdict{
		score:       number(attrs, k.score),
		threshold:   number(attrs, k.threshold),
		expectedMin: number(attrs, k.expectedMin),
		expectedMax: number(attrs, k.expectedMax),
		duration:    number(attrs, k.incidentDuration),
		peak:        number(attrs, k.incidentPeak),
	}
	if tf, ok := attrs.Get(k.topFeature); ok {
		v.topFeature = tf.AsString()
	}
	if c, ok := attrs.Get(k.contributions); ok {
		v.contributions = c.AsString()
	}
	if m, ok := attrs.Get(k.model); ok {
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
