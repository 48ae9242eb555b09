package anomalyeventsconnector

import (
	"context"
	"fmt"
	"testing"

	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/otel-iforest/iforest/connector/internal/metadata"
)

// BenchmarkConsume measures a batch of 1000 scored gauge datapoints, with
// no event (the common case) and with one incident start per 100 points.
func BenchmarkConsume(b *testing.B) {
	for _, every := range []int{0, 100} {
		b.Run(fmt.Sprintf("events_every=%d", every), func(b *testing.B) {
			md := pmetric.NewMetrics()
			sm := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty()
			dps := sm.Metrics().AppendEmpty().SetEmptyGauge().DataPoints()
			for i := range 1000 {
				dp := dps.AppendEmpty()
				dp.SetTimestamp(pcommon.NewTimestampFromTime(t0))
				dp.SetDoubleValue(float64(i))
				dp.Attributes().PutStr("series", fmt.Sprint(i))
				dp.Attributes().PutStr("host", "h1")
				if every > 0 && i%every == 0 {
					flagged(dp.Attributes(), 0.9, 0.8)
					expected(dp.Attributes(), 1, 2)
					started(dp.Attributes(), "00000000000000aa")
				} else {
					normal(dp.Attributes(), 0.4)
				}
			}
			md.MarkReadOnly()
			// Remote verdicts: the same batch again and again is reported
			// every time (the ledger would take each start once).
			cfg := defaultConfig()
			cfg.AcceptRemoteVerdicts = true
			c, err := NewFactory().CreateMetricsToLogs(context.Background(), connectortest.NewNopSettings(metadata.Type), cfg, consumertest.NewNop())
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = c.Shutdown(context.Background()) })
			b.ReportAllocs()
			for b.Loop() {
				if err := c.ConsumeMetrics(context.Background(), md); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*dps.Len()), "ns/datapoint")
		})
	}
}
