package iforestprocessor

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/otel-iforest/iforest/internal/metadata"
	"github.com/otel-iforest/iforest/internal/verdict"
)

// transitionsIn returns the incident ids the processor wrote as started and
// as ended on the batches in sink.
func transitionsIn(t *testing.T, sinkAttrs func(func(pcommon.Map))) (started, ended []uint64) {
	t.Helper()
	sinkAttrs(func(m pcommon.Map) {
		inc, ok := m.Get("anomaly.incident")
		if !ok {
			return
		}
		s, _ := m.Get("anomaly.incident.id")
		id, ok := verdict.ParseID(s.Str())
		require.True(t, ok, "incident id %q", s.Str())
		switch inc.Str() {
		case verdict.Started:
			started = append(started, id)
		case verdict.Ended:
			ended = append(ended, id)
		}
	})
	return started, ended
}

// Every incident the processor opens or ends is in the process's ledger,
// which is how the anomalyevents connector tells its verdicts from forged
// ones.
func TestIncidentsInLedger(t *testing.T) {
	p, sink := newTestProcessor(t, createDefaultConfig().(*Config), processortest.NewNopSettings(metadata.Type))
	warm(t, p)
	for step := warmSteps; step <= warmSteps+5; step++ {
		require.NoError(t, p.ConsumeMetrics(context.Background(), makeBatch(step, step == warmSteps)))
	}
	started, ended := transitionsIn(t, func(f func(pcommon.Map)) {
		for _, md := range sink.AllMetrics() {
			forEachAttrs(md, f)
		}
	})
	require.NotEmpty(t, started)
	require.NotEmpty(t, ended)
	r := verdict.Default.Reader(t.Name())
	for _, id := range started {
		assert.Equal(t, verdict.Vouched, r.ClaimStart(id), "start of %x", id)
	}
	for _, id := range ended {
		assert.Equal(t, verdict.Vouched, r.ClaimEnd(id), "end of %x", id)
	}
	assert.Equal(t, verdict.Unknown, r.ClaimStart(0x5eed5eed5eed5eed), "an id no processor issued")
}

// Incidents open when the models were saved are in the ledger after a
// restart, with their start already reported: their end may be reported,
// a copy of their start may not.
func TestRestoredIncidentsInLedger(t *testing.T) {
	st := newMemStorage()
	first, err := startPersisting(t, persistConfig(), extHost{storageID: st})
	require.NoError(t, err)
	first.feed(t, 0, 76) // the busy host of step 75 opens incidents
	require.NoError(t, first.p.Shutdown(context.Background()))
	started, ended := transitionsIn(t, func(f func(pcommon.Map)) {
		for _, md := range first.sink.AllMetrics() {
			forEachAttrs(md, f)
		}
	})
	require.NotEmpty(t, started)
	require.Empty(t, ended, "still open when saved")

	r := verdict.Default.Reader(t.Name())
	for _, id := range started {
		// The first processor opened it: new to this reader.
		require.Equal(t, verdict.Vouched, r.ClaimStart(id))
	}
	fresh := verdict.Default.Reader(t.Name() + "/fresh")
	second, err := startPersisting(t, persistConfig(), extHost{storageID: st})
	require.NoError(t, err)
	defer func() { require.NoError(t, second.p.Shutdown(context.Background())) }()
	for _, id := range started {
		// Restored: its start counts as reported, for every reader.
		assert.Equal(t, verdict.Repeated, fresh.ClaimStart(id), "restored incident %x", id)
		assert.True(t, verdict.Default.Live(id))
	}
}
