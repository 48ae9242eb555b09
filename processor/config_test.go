package iforestprocessor

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
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
			c.Seasonality = "weekly"
			c.MinDeviation = MinDeviationConfig{Relative: 0.05, Absolute: 0.5}
			c.Incidents = IncidentsConfig{OpenAfter: 2, OpenWindow: 3, CloseAfter: 10, Cooldown: 4, SuppressRepeats: 50, NewNormalAfter: 10 * time.Minute}
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
			c.HighCardinality = HighCardinalityConfig{Enabled: true, GroupBy: []string{"service.name"}, Warmup: 16, MaxSeries: 2000000, MaxGroups: 1000}
		}},
		{id: component.NewIDWithName(metadata.Type, "bad_seasonality"), wantErr: `seasonality: must be one of auto, none, daily, weekly, got "hourly"`},
		{id: component.NewIDWithName(metadata.Type, "bad_min_deviation"), wantErr: "min_deviation.relative: must be in [0, 1), got 1.5"},
		{id: component.NewIDWithName(metadata.Type, "bad_min_deviation"), wantErr: "min_deviation.absolute: must be 0 or more, got -1"},
		{id: component.NewIDWithName(metadata.Type, "bad_new_normal_after"), wantErr: "incidents.new_normal_after: must be 0 (off) or positive, got -1m0s"},
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
	// The collector's own check of a config struct: exported fields,
	// snake_case mapstructure tags.
	require.NoError(t, componenttest.CheckConfigStruct(createDefaultConfig()))
}

// unmarshalYAML decodes a processor section as the collector does: YAML
// parsed by confmap, then Unmarshal (which runs Config.Unmarshal) and
// Validate.
func unmarshalYAML(t *testing.T, y string) (*Config, error) {
	t.Helper()
	ret, err := confmap.NewRetrievedFromYAML([]byte(y))
	require.NoError(t, err)
	conf, err := ret.AsConf()
	require.NoError(t, err)
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	if err := conf.Unmarshal(cfg); err != nil {
		return cfg, err
	}
	return cfg, confmap.Validate(cfg)
}

// Values that confmap would silently turn into something else are
// rejected, each with its key.
func TestConfigRejectsWhatItCannotHonour(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"series_ttl: 5", "series_ttl: 5 has no unit, which would mean 5ns; write e.g. 5s or 5m"},
		{"checkpoint_interval: 1", "checkpoint_interval: 1 has no unit"},
		{"max_time_ahead: 300", "max_time_ahead: 300 has no unit"},
		{"series_ttl: five minutes", `series_ttl: "five minutes" is not a duration`},
		{"series_ttl: null", "series_ttl: must be a duration, got null"},
		{"models:\n  - name: m\n    staleness: 30\n    features: [{metric: a}, {metric: b}]", "models[0].staleness: 30 has no unit"},
		{"max_series: 0.5", "max_series: must be a whole number, got 0.5"},
		{"max_series: null", "max_series: must be a whole number, got null"},
		{"max_series: 1e19", "max_series: must be a whole number between -9223372036854775808 and 9223372036854775807, got 1e+19"},
		{"sample_size: 1e308", "sample_size: must be a whole number between -9223372036854775808 and 9223372036854775807, got 1e+308"},
		{"seed: -1", "seed: must be a whole number between 0 and 18446744073709551615, got -1"},
		{"seed: 0.5", "seed: must be a whole number, got 0.5"},
		{"high_cardinality:\n  max_series: 2.5", "high_cardinality.max_series: must be a whole number, got 2.5"},
		{"high_cardinality:\n  max_groups: null", "high_cardinality.max_groups: must be a whole number, got null"},
		{"incidents:\n  open_after: .5", "incidents.open_after: must be a whole number, got 0.5"},
		{"models:\n  - name: m\n    trees: 1.5\n    staleness: 30s\n    features: [{metric: a}, {metric: b}]", "models[0].trees: must be a whole number, got 1.5"},
		{"threshold: null", "threshold: must be a number, got null"},
		{"max_series: ten", "max_series: must be a whole number, got ten"},
		// Units given, but too small to be meant.
		{"checkpoint_interval: 10ms", "checkpoint_interval: must be at least 1s, got 10ms"},
		{"series_ttl: 500ms", "series_ttl: must be 0 (never) or at least 1s, got 500ms"},
	} {
		t.Run(tc.yaml, func(t *testing.T) {
			_, err := unmarshalYAML(t, tc.yaml)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	// Every bad key at once.
	_, err := unmarshalYAML(t, "series_ttl: 5\nmax_series: 0.5\nwarmup: null\n")
	require.Error(t, err)
	for _, key := range []string{"series_ttl:", "max_series:", "warmup:"} {
		assert.Contains(t, err.Error(), key)
	}
}

func TestConfigAcceptsWholeFloatsAndZeroDurations(t *testing.T) {
	cfg, err := unmarshalYAML(t, "max_series: 1e6\nseries_ttl: 0\ncheckpoint_interval: 90s\nseed: 18446744073709551615\n")
	require.NoError(t, err)
	assert.Equal(t, 1000000, cfg.MaxSeries)
	assert.Equal(t, time.Duration(0), cfg.SeriesTTL)
	assert.Equal(t, 90*time.Second, cfg.CheckpointInterval)
	assert.Equal(t, uint64(18446744073709551615), cfg.Seed)
}

// A model takes the top level's forest settings for the keys it leaves
// out, and may set any of them, 0 included.
func TestModelForestSettingsInherit(t *testing.T) {
	cfg, err := unmarshalYAML(t, `
trees: 50
contamination: 0.05
threshold: 0.75
models:
  - name: plain
    staleness: 30s
    features: [{metric: a}, {metric: b}]
  - name: own
    contamination: 0
    trees: 10
    window_size: 64
    warmup: 16
    staleness: 30s
    features: [{metric: c}, {metric: d}]
`)
	require.NoError(t, err)
	require.Len(t, cfg.Models, 2)
	assert.Equal(t, cfg.ForestConfig, cfg.Models[0].ForestConfig, "all inherited")
	own := cfg.Models[1].ForestConfig
	assert.Equal(t, ForestConfig{Trees: 10, SampleSize: 32, WindowSize: 64, Warmup: 16, RefitInterval: 16, Threshold: 0.75, Contamination: 0}, own)
	assert.Equal(t, 0.0, cfg.Models[1].detectorConfig(cfg.detectorConfig()).Contamination, "0 is a value, not 'inherit'")
	assert.Equal(t, 0.05, cfg.Models[0].detectorConfig(cfg.detectorConfig()).Contamination)
}

// Incident settings are checked by the processor, each named.
func TestIncidentSettingsNamed(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.Incidents = IncidentsConfig{OpenAfter: 3, OpenWindow: 2, CloseAfter: 0, Cooldown: -1}
	err := cfg.Validate()
	require.Error(t, err)
	for _, key := range []string{"incidents.open_after", "incidents.close_after", "incidents.cooldown"} {
		assert.Contains(t, err.Error(), key)
	}
}
