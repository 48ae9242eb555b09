package iforestprocessor

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/otel-iforest/iforest/internal/rules"
)

// BenchmarkProcessorRules is BenchmarkProcessor at 1000 series with
// operators' rules: "idle" has five rules that apply to the metric but are
// not in force (the usual case: a window elsewhere in the day), "mute" one
// that mutes every datapoint. Compare with BenchmarkProcessor/series=1000
// for what rules cost on the hot path.
func BenchmarkProcessorRules(b *testing.B) {
	window := func(name, action string, daily string) rules.Rule {
		r := rules.Rule{Name: name, Match: rules.Match{Metrics: []string{`bench\..*`, `load\..*`}}, Action: action}
		if daily != "" {
			r.When.Daily = []string{daily}
		}
		return r
	}
	for _, tc := range []struct {
		name  string
		rules []rules.Rule
	}{
		{"idle", []rules.Rule{
			window("a", rules.ActionMute, "01:00-01:01"), window("b", rules.ActionSkip, "02:00-02:01"),
			window("c", rules.ActionMute, "03:00-03:01"), window("d", rules.ActionSkip, "04:00-04:01"),
			window("e", rules.ActionMute, "05:00-05:01"),
		}},
		{"mute", []rules.Rule{window("all", rules.ActionMute, "")}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			const series = 1000
			cfg := createDefaultConfig().(*Config)
			cfg.MaxSeries = 0
			cfg.Operator.Rules = tc.rules
			rng := rand.New(rand.NewPCG(1, 2))
			ctx := context.Background()
			p := newBenchProcessor(b, cfg)
			round := 0
			for ; round < cfg.Warmup+cfg.Trees*cfg.RefitInterval; round++ {
				if err := p.ConsumeMetrics(ctx, gaugeBatch(0, series, round, rng)); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				md := gaugeBatch(0, series, round, rng)
				round++
				b.StartTimer()
				if err := p.ConsumeMetrics(ctx, md); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*series)/b.Elapsed().Seconds(), "dp/s")
		})
	}
}
