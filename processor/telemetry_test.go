package iforestprocessor

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/otel-iforest/iforest/internal/detector"
)

// The reason values the processor records are the ones metadata.yaml
// declares, in both directions: a new skip reason or eviction cause must
// be declared (and so documented), and a declared one must exist.
func TestTelemetryReasonsAreDeclared(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "metadata.yaml"))
	require.NoError(t, err)
	var md struct {
		Attributes map[string]struct {
			NameOverride string   `yaml:"name_override"`
			Enum         []string `yaml:"enum"`
		} `yaml:"attributes"`
		Telemetry struct {
			Metrics map[string]struct {
				Attributes []string `yaml:"attributes"`
			} `yaml:"metrics"`
		} `yaml:"telemetry"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &md))

	var skips []string
	for i := range numSkip {
		if i != int(detector.Scored) {
			skips = append(skips, skipReason(i))
		}
	}
	assert.ElementsMatch(t, md.Attributes["reason"].Enum, skips)
	assert.Equal(t, []string{"reason"}, md.Telemetry.Metrics["processor_iforest_datapoints_skipped"].Attributes)

	assert.ElementsMatch(t, md.Attributes["eviction_reason"].Enum, evictionReasons[:])
	assert.Equal(t, "reason", md.Attributes["eviction_reason"].NameOverride)
	assert.Equal(t, []string{"eviction_reason"}, md.Telemetry.Metrics["processor_iforest_series_evicted"].Attributes)
}
