package iforestprocessor

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/otel-iforest/iforest/internal/detector"
	"github.com/otel-iforest/iforest/internal/forest"
	"github.com/otel-iforest/iforest/internal/rules"
)

// ModelConfig is a multivariate model: several metrics of one entity (a
// host, a pod) joined into one vector and scored together.
type ModelConfig struct {
	// Name identifies the model in the output (anomaly.model).
	Name string `mapstructure:"name"`
	// Entity says which attributes key an entity.
	Entity EntityConfig `mapstructure:"entity"`
	// Features are the vector's members, in order.
	Features []FeatureConfig `mapstructure:"features"`
	// Staleness is how old a member's latest value may be, relative to the
	// newest member update, for the vector to be scored.
	Staleness time.Duration `mapstructure:"staleness"`

	// Forest settings: the keys a model leaves out take the top level's
	// values (see Config.Unmarshal); a config built in Go sets them all.
	ForestConfig `mapstructure:",squash"`
}

// EntityConfig lists the attributes whose values name an entity.
type EntityConfig struct {
	ResourceAttributes []string `mapstructure:"resource_attributes"`
	Attributes         []string `mapstructure:"attributes"`
}

// FeatureConfig picks one member of a model's vector out of a metric.
type FeatureConfig struct {
	// Name of the feature in explanations; defaults to the metric name.
	Name   string `mapstructure:"name"`
	Metric string `mapstructure:"metric"`
	// Where: datapoint attributes that must all have these values.
	Where map[string]string `mapstructure:"where"`
	// WhereNot: datapoint attributes that must not have these values.
	WhereNot map[string]string `mapstructure:"where_not"`
	// Per: when set, the matching datapoints' values are first summed per
	// value of this attribute (e.g. per cpu, over states), then aggregated.
	Per string `mapstructure:"per"`
	// Aggregate combines the matching datapoints of one entity in a batch:
	// mean (default), sum, min, max.
	Aggregate string `mapstructure:"aggregate"`
}

var aggregates = []string{"mean", "sum", "min", "max"}

func (m *ModelConfig) validate(i int, seen map[string]bool) error {
	key := fmt.Sprintf("models[%d]", i)
	var errs []error
	switch {
	case m.Name == "":
		errs = append(errs, fmt.Errorf("%s.name: must be set", key))
	case seen[m.Name]:
		errs = append(errs, fmt.Errorf("%s.name: %q is used by another model", key, m.Name))
	}
	seen[m.Name] = true
	switch {
	case len(m.Features) < 2:
		errs = append(errs, fmt.Errorf("%s.features: a model joins at least 2 features, got %d", key, len(m.Features)))
	case len(m.Features) > forest.MaxFeatures:
		errs = append(errs, fmt.Errorf("%s.features: a model joins at most %d features, got %d", key, forest.MaxFeatures, len(m.Features)))
	}
	names := map[string]bool{}
	for j, f := range m.Features {
		fk := fmt.Sprintf("%s.features[%d]", key, j)
		if f.Metric == "" {
			errs = append(errs, fmt.Errorf("%s.metric: must be set", fk))
		}
		if n := f.name(); names[n] {
			errs = append(errs, fmt.Errorf("%s.name: %q names two features; give them distinct names", fk, n))
		} else {
			names[n] = true
		}
		if f.Aggregate != "" && !slices.Contains(aggregates, f.Aggregate) {
			errs = append(errs, fmt.Errorf("%s.aggregate: must be one of %s, got %q", fk, strings.Join(aggregates, ", "), f.Aggregate))
		}
	}
	if m.Staleness <= 0 {
		errs = append(errs, fmt.Errorf("%s.staleness: must be positive, got %v", key, m.Staleness))
	}
	return errors.Join(errs...)
}

func (f *FeatureConfig) name() string {
	if f.Name != "" {
		return f.Name
	}
	return f.Metric
}

func (f *FeatureConfig) matches(attrs pcommon.Map) bool {
	for k, want := range f.Where {
		v, ok := attrs.Get(k)
		if !ok || v.AsString() != want {
			return false
		}
	}
	for k, not := range f.WhereNot {
		if v, ok := attrs.Get(k); ok && v.AsString() == not {
			return false
		}
	}
	return true
}

// detectorConfig is the model's forest settings over base, the per-series
// models' (for the incident settings and the seed).
func (m *ModelConfig) detectorConfig(base detector.Config) detector.Config {
	c := m.ForestConfig.detectorConfig(base)
	c.Seed = base.Seed ^ hashString(m.Name)
	// A joined model takes no derived input, so the top-level lookback
	// must not constrain (or be checked against) its window.
	c.Lookback = 0
	return c
}

// model is a configured multivariate model at run time.
type model struct {
	cfg       *ModelConfig
	det       *detector.Detector
	staleness int64
	// featureNames name the features in the contributions text.
	featureNames []string
}

// featureRef says that a metric feeds feature f of model m.
type featureRef struct{ m, f int }

// pending collects, during one batch, what each entity's features got.
type pending struct {
	model *model
	key   uint64
	feats []featureAcc
	// dps are the attributes of every datapoint that fed the vector; the
	// verdict is written on all of them (see README: where scores land).
	dps []pcommon.Map
	// mute is a mute rule that applied to one of them: it mutes the vector.
	mute *rules.Compiled
}

type featureAcc struct {
	n             int
	sum, min, max float64
	time          int64
	per           map[string]float64 // sums per value of FeatureConfig.Per
}

func (a *featureAcc) add(v float64, t int64, perKey string, per bool) {
	if per {
		if a.per == nil {
			a.per = map[string]float64{}
		}
		a.per[perKey] += v
	} else {
		if a.n == 0 {
			a.min, a.max = v, v
		}
		a.sum += v
		a.min, a.max = math.Min(a.min, v), math.Max(a.max, v)
	}
	a.n++
	a.time = max(a.time, t)
}

func (a *featureAcc) value(agg string) float64 {
	if a.per != nil {
		var g featureAcc
		for _, v := range a.per {
			g.add(v, 0, "", false)
		}
		return g.value(agg)
	}
	switch agg {
	case "sum":
		return a.sum
	case "min":
		return a.min
	case "max":
		return a.max
	}
	return a.sum / float64(a.n)
}

// entityKey hashes the model name and the entity's attribute values.
func entityKey(m *ModelConfig, res, dp pcommon.Map) uint64 {
	h := hashString(m.Name)
	for _, k := range m.Entity.ResourceAttributes {
		if v, ok := res.Get(k); ok {
			h = combine(h, hashValue(v))
		} else {
			h = combine(h, tagEmpty)
		}
	}
	for _, k := range m.Entity.Attributes {
		if v, ok := dp.Get(k); ok {
			h = combine(h, hashValue(v))
		} else {
			h = combine(h, tagEmpty)
		}
	}
	return h
}

// claim feeds a number datapoint to the first model feature that wants it
// (in configuration order: a datapoint feeds one model, so verdicts never
// mix) and reports whether one did; a claimed datapoint is not also scored
// on its own. Models read levels: gauges and non-monotonic sums as they are,
// delta sums per second of their interval. Cumulative counters need a
// per-datapoint rate state that models do not keep, so they are left to the
// per-series models.
func (p *iforestProcessor) claim(refs []featureRef, res pcommon.Map, dp pmetric.NumberDataPoint, kind detector.Kind, b *batch) bool {
	if kind == detector.CumulativeSum {
		return false
	}
	v, ok := numberValue(dp)
	if !ok {
		return false
	}
	start, t := int64(dp.StartTimestamp()), int64(dp.Timestamp())
	if kind == detector.DeltaSum && start != 0 && t > start {
		v /= float64(t-start) / 1e9
	}
	if t == 0 {
		t = b.now // no timestamp: the time it arrived
	}
	for _, r := range refs {
		m := p.models[r.m]
		f := &m.cfg.Features[r.f]
		if !f.matches(dp.Attributes()) {
			continue
		}
		if dp.Flags().NoRecordedValue() || math.IsNaN(v) || math.IsInf(v, 0) {
			b.skipped[skipNoValue]++
			return true
		}
		mute, skip := p.ops.rule(&b.ops, dp.Attributes(), res, t, b.now)
		if skip {
			return true // kept out of the vector, see rules.go
		}
		key := entityKey(m.cfg, res, dp.Attributes())
		if b.pending == nil {
			b.pending = map[uint64]*pending{}
		}
		pe := b.pending[key]
		if pe == nil {
			pe = &pending{model: m, key: key, feats: make([]featureAcc, len(m.cfg.Features))}
			b.pending[key] = pe
		}
		var perKey string
		if f.Per != "" {
			if pv, ok := dp.Attributes().Get(f.Per); ok {
				perKey = pv.AsString()
			}
		}
		if mute != nil {
			pe.mute = mute
		}
		pe.feats[r.f].add(v, t, perKey, f.Per != "")
		pe.dps = append(pe.dps, dp.Attributes())
		return true
	}
	return false
}

// scoreEntities observes one joined vector per entity touched by the batch
// and writes its verdict on the datapoints that fed it.
func (p *iforestProcessor) scoreEntities(b *batch) {
	for _, pe := range b.pending {
		m := pe.model
		ups := b.ups[:0]
		for i := range pe.feats {
			if a := &pe.feats[i]; a.n > 0 {
				ups = append(ups, detector.MemberUpdate{Index: i, Time: a.time, Value: a.value(m.cfg.Features[i].Aggregate)})
			}
		}
		b.ups = ups
		v := m.det.ObserveMembers(pe.key, len(m.cfg.Features), ups, m.staleness, b.now)
		if v.Status != detector.Scored {
			b.skipped[v.Status] += int64(len(pe.dps))
			continue
		}
		p.ops.gate(&b.ops, pe.key, noValue, pe.mute, &v)
		b.scored += int64(len(pe.dps))
		if v.Anomaly {
			b.anomalies += int64(len(pe.dps))
		}
		if !p.writeAttrs {
			continue
		}
		top, contrib := explain(m.featureNames, v.Contributions)
		for i, attrs := range pe.dps {
			if i == 1 {
				// One incident, one start and one end: the transition goes on
				// the first datapoint only, so that downstream events are not
				// repeated per datapoint that fed the vector.
				v.Incident = detector.NoTransition
			}
			p.attr.write(attrs, &v)
			attrs.PutStr(p.attr.Model, m.cfg.Name)
			if v.Anomaly {
				attrs.PutStr(p.attr.TopFeature, top)
				attrs.PutStr(p.attr.Contributions, contrib)
			}
		}
	}
}

// explain names the feature that contributed most and renders all shares,
// largest first, e.g. "cpu 0.82, memory 0.18".
func explain(names []string, shares []float64) (string, string) {
	if len(shares) != len(names) {
		return "", ""
	}
	order := make([]int, len(names))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case shares[a] > shares[b]:
			return -1
		case shares[a] < shares[b]:
			return 1
		}
		return 0
	})
	var sb strings.Builder
	for i, j := range order {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(names[j])
		sb.WriteByte(' ')
		sb.WriteString(strconv.FormatFloat(shares[j], 'f', 2, 64))
	}
	return names[order[0]], sb.String()
}
