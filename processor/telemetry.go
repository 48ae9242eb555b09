package iforestprocessor

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/otel-iforest/iforest/internal/detector"
)

// The processor's own telemetry (metadata.yaml): counters recorded once
// per batch, and the series held and their memory read from the models
// when the telemetry is collected.

// Skip reasons: the detector's statuses plus what the processor itself
// rejects before asking the detector.
const (
	skipNoValue = int(detector.FutureTime) + 1 + iota
	numSkip
)

// evictionReasons are the values of series_evicted's reason attribute, in
// the order of evictAttrs.
var evictionReasons = [...]string{"idle", "limit"}

func skipReason(i int) string {
	if i == skipNoValue {
		return "no_value"
	}
	return detector.Status(i).String()
}

func (p *iforestProcessor) record(ctx context.Context, b *batch, failed bool, took time.Duration) {
	t := p.tel
	if b.scored > 0 {
		t.ProcessorIforestDatapointsScored.Add(ctx, b.scored)
	}
	if b.anomalies > 0 {
		t.ProcessorIforestAnomalies.Add(ctx, b.anomalies)
	}
	for i, n := range b.skipped {
		if n > 0 {
			t.ProcessorIforestDatapointsSkipped.Add(ctx, n, p.skipAttrs[i])
		}
	}
	if failed {
		t.ProcessorIforestErrors.Add(ctx, 1)
	}
	st := b.det
	if st.TreesBuilt > 0 {
		t.ProcessorIforestTreesRefit.Add(ctx, st.TreesBuilt)
	}
	// In the order of evictionReasons.
	for i, n := range [...]int64{st.EvictedIdle, st.EvictedLimit} {
		if n > 0 {
			t.ProcessorIforestSeriesEvicted.Add(ctx, n, p.evictAttrs[i])
		}
	}
	for i, n := range [...]int64{st.GroupsEvictedIdle, st.GroupsEvictedLimit} {
		if n > 0 {
			t.ProcessorIforestGroupsEvicted.Add(ctx, n, p.evictAttrs[i])
		}
	}
	p.ops.record(ctx, &b.ops)
	t.ProcessorIforestBatchDuration.Record(ctx, took.Seconds())
}

// registerGauges has series_active and series_memory read from the models
// when the telemetry is collected.
func (p *iforestProcessor) registerGauges() error {
	return errors.Join(
		p.tel.RegisterProcessorIforestSeriesActiveCallback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(p.seriesActive())
			return nil
		}),
		p.tel.RegisterProcessorIforestSeriesMemoryCallback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(p.memoryBytes())
			return nil
		}),
		p.tel.RegisterProcessorIforestGroupsActiveCallback(func(_ context.Context, o metric.Int64Observer) error {
			if p.grouped != nil {
				o.Observe(int64(p.grouped.Groups()))
			}
			return nil
		}),
	)
}

// seriesActive is the number of series models and high-cardinality
// baselines held.
func (p *iforestProcessor) seriesActive() int64 {
	n := p.det.Len()
	if p.grouped != nil {
		n += p.grouped.Len()
	}
	for _, m := range p.models {
		n += m.det.Len()
	}
	return int64(n)
}

// memoryBytes is the estimated memory of the models, the high-cardinality
// groups and baselines, the cache of metric-name selections, and the rules
// and feedback.
func (p *iforestProcessor) memoryBytes() int64 {
	n := p.det.MemoryBytes()
	if p.grouped != nil {
		n += p.grouped.MemoryBytes()
	}
	if p.selected != nil {
		n += p.selected.memBytes()
	}
	for _, m := range p.models {
		n += m.det.MemoryBytes()
	}
	n += p.ops.memoryBytes()
	return n
}
