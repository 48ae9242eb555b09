package iforestprocessor

import (
	"context"
	"fmt"
	"regexp"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/otel-iforest/iforest/internal/detector"
	"github.com/otel-iforest/iforest/internal/metadata"
)

type iforestProcessor struct {
	cfg     *Config
	det     *detector.Detector
	grouped *detector.Grouped // high_cardinality: univariate points go here instead of det
	tel     *metadata.TelemetryBuilder
	logger  *zap.Logger

	include, exclude []*regexp.Regexp
	selected         *nameCache // when include/exclude are set

	attr                    attrNames
	writeAttrs, writeMetric bool

	models []*model
	refs   map[string][]featureRef // metric name -> model features it feeds

	ckpt *checkpointer // saves and restores the models; nil without storage (persist.go)
	ops  *operators    // rules and feedback (rules.go, feedback.go)

	clock      func() time.Time // tests' clock for the models' recency; nil: time.Now
	lastSweep  atomic.Int64
	skipAttrs  [numSkip]metric.MeasurementOption
	evictAttrs [len(evictionReasons)]metric.MeasurementOption
}

func newProcessor(set processor.Settings, cfg *Config) (*iforestProcessor, error) {
	tel, err := metadata.NewTelemetryBuilder(set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	p := &iforestProcessor{
		cfg:         cfg,
		det:         detector.New(cfg.detectorConfig(), cfg.MaxSeries),
		tel:         tel,
		logger:      set.Logger,
		attr:        newAttrNames(cfg.Output.AttributePrefix),
		writeAttrs:  cfg.Output.Mode != OutputMetric,
		writeMetric: cfg.Output.Mode != OutputAttributes,
	}
	if p.ops, err = newOperators(cfg, set.Logger, tel); err != nil {
		return nil, err
	}
	if hc := cfg.HighCardinality; hc.Enabled {
		p.grouped = detector.NewGrouped(cfg.detectorConfig(), hc.Warmup, hc.MaxSeries, hc.MaxGroups)
	}
	for _, s := range cfg.Metrics.Include {
		re, err := compileAnchored(s)
		if err != nil {
			return nil, fmt.Errorf("metrics.include: %w", err)
		}
		p.include = append(p.include, re)
	}
	for _, s := range cfg.Metrics.Exclude {
		re, err := compileAnchored(s)
		if err != nil {
			return nil, fmt.Errorf("metrics.exclude: %w", err)
		}
		p.exclude = append(p.exclude, re)
	}
	if p.include != nil || p.exclude != nil {
		p.selected = newNameCache()
	}
	for i := range cfg.Models {
		mc := &cfg.Models[i]
		m := &model{cfg: mc, det: detector.New(mc.detectorConfig(cfg.detectorConfig()), cfg.MaxSeries), staleness: int64(mc.Staleness)}
		for j := range mc.Features {
			m.featureNames = append(m.featureNames, mc.Features[j].name())
			if p.refs == nil {
				p.refs = map[string][]featureRef{}
			}
			p.refs[mc.Features[j].Metric] = append(p.refs[mc.Features[j].Metric], featureRef{m: i, f: j})
		}
		p.models = append(p.models, m)
	}
	for i := range p.skipAttrs {
		if i == int(detector.Scored) {
			continue
		}
		p.skipAttrs[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", skipReason(i))))
	}
	for i, reason := range evictionReasons {
		p.evictAttrs[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", reason)))
	}
	if cfg.Storage != nil {
		p.ckpt = newCheckpointer(p, set.ID)
	}
	p.lastSweep.Store(time.Now().UnixNano())
	if err := p.registerGauges(); err != nil {
		return nil, err
	}
	return p, nil
}

// start restores the saved models, if storage is configured.
func (p *iforestProcessor) start(ctx context.Context, host component.Host) error {
	// The rules file is read first (a bad one fails the start), then the
	// models and the feedback are restored (rules.go, persist.go).
	return p.ops.start(ctx, func() error {
		if p.ckpt == nil {
			return nil
		}
		return p.ckpt.start(ctx, host)
	})
}

// shutdown saves the models a last time, if storage is configured.
func (p *iforestProcessor) shutdown(ctx context.Context) error {
	p.ops.shutdown() // stops the rules file's watcher
	var err error
	if p.ckpt != nil {
		err = p.ckpt.shutdown(ctx)
	}
	p.tel.Shutdown()
	return err
}

// batch accumulates one call's counters so telemetry is recorded once per
// batch, not once per datapoint.
type batch struct {
	now       int64
	scored    int64
	anomalies int64
	skipped   [numSkip]int64
	scores    pmetric.MetricSlice // score metrics made for the current scope
	cur       *scoreMetrics
	det       detector.Stats

	// Multivariate models: the current resource's attributes, the model
	// features fed by the current metric, and what entities got this batch.
	res        pcommon.Map
	refs       []featureRef
	univariate bool
	ratio      bool // the current metric's values lie in [0, 1]
	pending    map[uint64]*pending
	ups        []detector.MemberUpdate

	ops opsBatch // rules and feedback (rules.go)
}

// processMetrics scores md in place and always returns it: the processor
// fails open, so its own trouble never costs the pipeline data.
func (p *iforestProcessor) processMetrics(ctx context.Context, md pmetric.Metrics) (pmetric.Metrics, error) {
	start := time.Now()
	b := batch{now: start.UnixNano()}
	if p.clock != nil {
		b.now = p.clock().UnixNano()
	}
	failed := false
	func() {
		defer func() {
			if r := recover(); r != nil {
				failed = true
				p.logger.Error("failed on a batch; forwarding it as it is (datapoints before the failure carry their verdicts, the rest none)", zap.Any("panic", r))
			}
		}()
		p.walk(md, &b)
		p.scoreEntities(&b)
		p.maybeEvict(b.now)
		b.det = p.det.TakeStats()
		for _, m := range p.models {
			b.det.Add(m.det.TakeStats())
		}
		if p.grouped != nil {
			b.det.Add(p.grouped.TakeStats())
		}
	}()
	p.record(ctx, &b, failed, time.Since(start))
	if p.ckpt != nil {
		// After the batch: a save that has already taken the flag sees this
		// batch's state, or the flag stays set for the next one.
		p.ckpt.changed.Store(true)
	}
	return md, nil
}

// maybeEvict drops idle models at most twice per TTL; the CAS lets one
// caller do it while the others carry on.
func (p *iforestProcessor) maybeEvict(now int64) {
	ttl := int64(p.cfg.SeriesTTL)
	if ttl <= 0 {
		return
	}
	last := p.lastSweep.Load()
	if now-last < ttl/2 || !p.lastSweep.CompareAndSwap(last, now) {
		return
	}
	n := p.det.Evict(now - ttl)
	if p.grouped != nil {
		n += p.grouped.Evict(now - ttl)
	}
	for _, m := range p.models {
		n += m.det.Evict(now - ttl)
	}
	if n > 0 {
		p.logger.Debug("evicted idle series", zap.Int("series", n))
	}
}
