package iforestprocessor

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/otel-iforest/iforest/internal/metadata"
)

// The fuzz targets call walk directly, not processMetrics, so that a panic
// surfaces instead of being absorbed by the fail-open recovery. Their seed
// corpora run in every `go test`; `go test -fuzz FuzzConsumeMetrics
// ./processor/` explores further.

func FuzzConsumeMetrics(f *testing.F) {
	var m pmetric.ProtoMarshaler
	for step := 0; step < 3; step++ {
		b, err := m.MarshalMetrics(makeBatch(step, step == 2))
		require.NoError(f, err)
		f.Add(b)
	}
	b, err := m.MarshalMetrics(gaugeSeries(0, 1.0, 2.0, int64(3), 1e308, -1e308))
	require.NoError(f, err)
	f.Add(b)
	f.Add([]byte{})

	cfg := createDefaultConfig().(*Config)
	cfg.Warmup = 8 // reach the scoring paths within a few repeats
	cfg.Output.Mode = OutputBoth
	// The same input through the high-cardinality mode.
	hc := *cfg
	hc.HighCardinality.Enabled = true
	hc.HighCardinality.Warmup = 2
	f.Fuzz(func(t *testing.T, data []byte) {
		var um pmetric.ProtoUnmarshaler
		md, err := um.UnmarshalMetrics(data)
		if err != nil {
			return
		}
		for _, c := range []*Config{cfg, &hc} {
			p, err := newProcessor(processortest.NewNopSettings(metadata.Type), c)
			require.NoError(t, err)
			in := md.DataPointCount()
			for i := 0; i < 12; i++ {
				md2 := pmetric.NewMetrics()
				md.CopyTo(md2)
				b := batch{now: time.Now().UnixNano()}
				p.walk(md2, &b)
				// Metric mode adds a score datapoint per scored datapoint.
				require.Equal(t, in+int(b.scored), md2.DataPointCount(), "datapoints lost or invented")
			}
			p.tel.Shutdown()
		}
	})
}

func FuzzConfig(f *testing.F) {
	raw, err := os.ReadFile(filepath.Join("testdata", "config.yaml"))
	require.NoError(f, err)
	f.Add(raw)
	f.Add([]byte("trees: 3\nsample_size: 4\nwindow_size: 16\nwarmup: 8\nrefit_interval: 1\n"))
	f.Add([]byte("output:\n  mode: metric\n  metric_suffix: .s\nmetrics:\n  include: ['a.*']\n  exclude: ['a.b']\n"))
	f.Add([]byte("contamination: 0.1\nincidents:\n  open_after: 2\n  open_window: 2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := confmap.NewRetrievedFromYAML(data)
		if err != nil {
			return
		}
		c, err := r.AsConf()
		if err != nil {
			return
		}
		cfg := createDefaultConfig().(*Config)
		if c.Unmarshal(cfg) != nil || cfg.Validate() != nil {
			return
		}
		// Big but valid models are legal; keep each fuzz run quick.
		if cfg.Trees*cfg.SampleSize > 20000 || cfg.WindowSize > 4096 {
			return
		}
		// Whatever passes validation must give a working processor.
		p, err := newProcessor(processortest.NewNopSettings(metadata.Type), cfg)
		require.NoError(t, err)
		defer p.tel.Shutdown()
		for step := 0; step < 40; step++ {
			md := makeBatch(step, step == 39)
			in := md.DataPointCount()
			b := batch{now: time.Now().UnixNano()}
			p.walk(md, &b)
			require.Equal(t, in+int(b.scored)*boolInt(p.writeMetric), md.DataPointCount())
		}
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
