package iforestprocessor

import (
	"context"
	"time"

	"github.com/otel-iforest/iforest/internal/detector"
)

// The processor's own telemetry (metadata.yaml): counters recorded once
// per batch.

// Skip reasons: the detector's statuses plus what the processor itself
// rejects before asking the detector.
const (
	skipNoValue = int(detector.FutureTime) + 1 + iota
	numSkip
)

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
	if d := st.Created - st.EvictedIdle - st.EvictedLimit; d != 0 {
		t.ProcessorIforestSeriesActive.Add(ctx, d)
	}
	if st.EvictedIdle > 0 {
		t.ProcessorIforestSeriesEvicted.Add(ctx, st.EvictedIdle, p.evictAttrs[0])
	}
	if st.EvictedLimit > 0 {
		t.ProcessorIforestSeriesEvicted.Add(ctx, st.EvictedLimit, p.evictAttrs[1])
	}
	// Deltas of an atomic total: concurrent batches' reports add up to it.
	if b.memKnown {
		if d := b.mem - p.memReported.Swap(b.mem); d != 0 {
			t.ProcessorIforestSeriesMemory.Add(ctx, d)
		}
	}
	t.ProcessorIforestBatchDuration.Record(ctx, took.Seconds())
}
