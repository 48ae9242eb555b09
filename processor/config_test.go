package iforestprocessor

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/otel-iforest/iforest/internal/metadata"
)

func TestLoadConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)

	q := 0.99
	tests := []struct {
		id      component.ID
		want    func(*Config)
		wantErr string
	}{
		{id: component.NewID(metadata.Type), want: func(*Config) {}},
		{id: component.NewIDWithName(metadata.Type, "custom"), want: func(c *Config) {
			c.Trees, c.SampleSize, c.WindowSize, c.Warmup, c.RefitInterval = 100, 128, 512, 48, 2
			c.Threshold, c.Contamination, c.Lookback, c.Seed = 0.7, 0.01, 5, 42
			c.Metrics = MetricSelection{
				Include: []string{`system\.cpu\..*`, "http.server.request.duration"},
				Exclude: []string{`system\.cpu\.time`},
			}
			c.SummaryQuantile = &q
			c.Incidents = IncidentsConfig{OpenAfter: 2, OpenWindow: 3, CloseAfter: 10, Cooldown: 4, SuppressRepeats: 50}
			c.Output = OutputConfig{Mode: OutputBoth, AttributePrefix: "iforest.", MetricSuffix: ".iforest_score"}
			c.MaxSeries, c.SeriesTTL = 500, 10*time.Minute
		}},
		{id: component.NewIDWithName(metadata.Type, "metric_mode"), want: func(c *Config) { c.Output.Mode = OutputMetric }},
		{id: component.NewIDWithName(metadata.Type, "bad_trees"), wantErr: "trees: must be between 1 and 1000, got 0"},
		{id: component.NewIDWithName(metadata.Type, "bad_threshold"), wantErr: "threshold: must be in (0, 1), got 1.2"},
		{id: component.NewIDWithName(metadata.Type, "bad_warmup"), wantErr: "warmup: must be between 8 and window_size (1024), got 2000"},
		{id: component.NewIDWithName(metadata.Type, "bad_lookback"), wantErr: "lookback: must be between 0 (off) and window_size - 1 (63), got 64"},
		{id: component.NewIDWithName(metadata.Type, "bad_suppress_repeats"), wantErr: "incidents.suppress_repeats: must be 0 (off) or more, got -1"},
		{id: component.NewIDWithName(metadata.Type, "bad_regex"), wantErr: "metrics.include[0]: invalid regular expression"},
		{id: component.NewIDWithName(metadata.Type, "bad_mode"), wantErr: `output.mode: must be one of "attributes", "metric", "both", got "events"`},
		{id: component.NewIDWithName(metadata.Type, "bad_quantile"), wantErr: "summary_quantile: must be in [0, 1], got 1.5"},
		{id: component.NewIDWithName(metadata.Type, "bad_incidents"), wantErr: "incidents.open_after: must be between 1 and incidents.open_window (3), got 4"},
		{id: component.NewIDWithName(metadata.Type, "bad_max_series"), wantErr: "max_series: must be 0 (no limit) or positive, got -1"},
		{id: component.NewIDWithName(metadata.Type, "high_cardinality"), want: func(c *Config) {
			c.HighCardinality = HighCardinalityConfig{Enabled: true, GroupBy: []string{"service.name"}, Warmup: 16, MaxSeries: 2000000}
		}},
		{id: component.NewIDWithName(metadata.Type, "bad_high_cardinality"), wantErr: "high_cardinality.warmup: must be between 2 and window_size (1024), got 1"},
	}
	for _, tt := range tests {
		t.Run(tt.id.String(), func(t *testing.T) {
			cfg := NewFactory().CreateDefaultConfig()
			sub, err := cm.Sub(tt.id.String())
			require.NoError(t, err)
			require.NoError(t, sub.Unmarshal(cfg))
			err = confmap.Validate(cfg)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			want := createDefaultConfig().(*Config)
			tt.want(want)
			assert.Equal(t, want, cfg)
		})
	}
}

func TestUnknownKeyIsRejected(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	sub, err := cm.Sub("iforest/custom")
	require.NoError(t, err)
	require.NoError(t, sub.Merge(confmapFrom(map[string]any{"tress": 3})))
	err = sub.Unmarshal(NewFactory().CreateDefaultConfig())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "tress")
}

func TestDefaultConfigIsValid(t *testing.T) {
	require.NoError(t, confmap.Validate(createDefaultConfig()))
}
