package anomalyeventsconnector

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/otel-iforest/iforest/connector/internal/metadata"
)

func TestLoadConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)

	tests := []struct {
		id      component.ID
		want    func(*Config)
		wantErr string
	}{
		{id: component.NewID(metadata.Type), want: func(*Config) {}},
		{id: component.NewIDWithName(metadata.Type, "custom"), want: func(c *Config) {
			c.AttributePrefix = "iforest."
			c.EmitDatapoints = true
			c.IncludeMetricAttributes = false
		}},
		{id: component.NewIDWithName(metadata.Type, "empty_prefix"), wantErr: "attribute_prefix: must not be empty"},
		{id: component.NewIDWithName(metadata.Type, "space_prefix"), wantErr: `attribute_prefix: must not start or end with white space, got "anomaly. "`},
		{id: component.NewIDWithName(metadata.Type, "grouped"), want: func(c *Config) {
			c.AcceptRemoteVerdicts = true
			c.GroupBy = []string{"host.name", "k8s.pod.name"}
			c.GroupWindow = 2 * time.Minute
			c.MaxOpenGroups = 50
			c.Rate.Interval = 30 * time.Second
			c.Rate.MaxEntities = 100
		}},
		{id: component.NewIDWithName(metadata.Type, "bad_group"), wantErr: strings.Join([]string{
			`group_by[1]: must be a resource attribute key, got ""`,
			`group_by[2]: "host.name" is listed twice`,
			"group_window: must be a duration of at least 1s, with a unit (e.g. 1m), got 900ms",
			"rate.interval: must be a duration of at least 1s, with a unit (e.g. 1m), got 500ms",
			"max_open_groups: must be at least 1, got 0",
			"rate.max_entities: must be at least 1, got -1",
		}, "\n")},
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

func TestDefaultConfig(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	require.NoError(t, confmap.Validate(cfg))
	assert.Equal(t, "anomaly.", cfg.AttributePrefix)
	assert.False(t, cfg.EmitDatapoints)
	assert.True(t, cfg.IncludeMetricAttributes)
	assert.False(t, cfg.AcceptRemoteVerdicts)
	assert.Empty(t, cfg.GroupBy)
	assert.Equal(t, time.Minute, cfg.GroupWindow)
	assert.Equal(t, time.Minute, cfg.Rate.Interval)
}

func TestUnknownKeyIsRejected(t *testing.T) {
	cm := confmap.NewFromStringMap(map[string]any{"emit_datapoint": true})
	err := cm.Unmarshal(NewFactory().CreateDefaultConfig())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "emit_datapoint")
}

// What confmap would silently change is refused, naming the key.
func TestValuesConfmapWouldChangeAreRejected(t *testing.T) {
	for _, c := range []struct {
		raw  map[string]any
		want string
	}{
		{map[string]any{"max_open_groups": 1.5}, "max_open_groups: must be a whole number, got 1.5"},
		{map[string]any{"group_window": 60}, "group_window: 60 has no unit"},
		{map[string]any{"rate": map[string]any{"max_entities": 2.5}}, "rate.max_entities: must be a whole number, got 2.5"},
		{map[string]any{"rate": map[string]any{"interval": nil}}, "rate.interval: must be a duration, got null"},
	} {
		err := confmap.NewFromStringMap(c.raw).Unmarshal(NewFactory().CreateDefaultConfig())
		require.Error(t, err, c.raw)
		assert.Contains(t, err.Error(), c.want, c.raw)
	}
	// Whole-number floats (YAML reads 1e3 as one) and durations with units pass.
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	require.NoError(t, confmap.NewFromStringMap(map[string]any{"max_open_groups": 1e3, "group_window": "30s"}).Unmarshal(cfg))
	assert.Equal(t, 1000, cfg.MaxOpenGroups)
	assert.Equal(t, 30*time.Second, cfg.GroupWindow)
}
