package anomalyeventsconnector

import (
	"path/filepath"
	"testing"

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
}

func TestUnknownKeyIsRejected(t *testing.T) {
	cm := confmap.NewFromStringMap(map[string]any{"emit_datapoint": true})
	err := cm.Unmarshal(NewFactory().CreateDefaultConfig())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "emit_datapoint")
}
