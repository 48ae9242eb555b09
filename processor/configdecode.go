package iforestprocessor

import (
	"errors"
	"fmt"
	"reflect"

	"go.opentelemetry.io/collector/confmap"

	"github.com/otel-iforest/iforest/internal/confcheck"
)

// Unmarshal decodes the configuration (confmap calls it for the processor's
// section). It first checks the raw values for what confmap's decoding would
// silently turn into something else (internal/confcheck), naming each key.
// Then the forest settings a model of models[] leaves out take the top
// level's values, so that a model can set any of them, 0 included.
func (c *Config) Unmarshal(conf *confmap.Conf) error {
	if conf == nil {
		return nil
	}
	raw := conf.ToStringMap()
	if errs := confcheck.Values(raw, reflect.TypeFor[Config]()); len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := conf.Unmarshal(c); err != nil {
		return err
	}
	models, _ := raw["models"].([]any)
	for i := range min(len(c.Models), len(models)) {
		mm, ok := models[i].(map[string]any)
		if !ok {
			continue
		}
		m := &c.Models[i]
		*m = ModelConfig{ForestConfig: c.ForestConfig}
		if err := confmap.NewFromStringMap(mm).Unmarshal(m); err != nil {
			return fmt.Errorf("models[%d]: %w", i, err)
		}
	}
	return nil
}
