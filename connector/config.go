package anomalyeventsconnector

import (
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/collector/component"
)

// Config is the anomalyevents connector's configuration.
type Config struct {
	// AttributePrefix starts the names of the verdict attributes the iforest
	// processor writes on datapoints (its output.attribute_prefix) and of the
	// attributes this connector writes on log records.
	AttributePrefix string `mapstructure:"attribute_prefix"`
	// EmitDatapoints adds one log record per flagged datapoint
	// (<prefix>detected = true) to the incident start and end events.
	EmitDatapoints bool `mapstructure:"emit_datapoints"`
	// IncludeMetricAttributes copies the datapoint's own attributes (all but
	// the <prefix>* ones) onto the log record.
	IncludeMetricAttributes bool `mapstructure:"include_metric_attributes"`

	// prevent unkeyed literal initialization
	_ struct{}
}

var _ component.Config = (*Config)(nil)

func createDefaultConfig() component.Config {
	return &Config{
		AttributePrefix:         "anomaly.",
		EmitDatapoints:          false,
		IncludeMetricAttributes: true,
	}
}

// Validate checks every key and names the offending ones.
func (c *Config) Validate() error {
	var errs []error
	if c.AttributePrefix == "" {
		errs = append(errs, errors.New("attribute_prefix: must not be empty (it must match the iforest processor's output.attribute_prefix, default \"anomaly.\")"))
	} else if strings.TrimSpace(c.AttributePrefix) != c.AttributePrefix {
		errs = append(errs, fmt.Errorf("attribute_prefix: must not start or end with white space, got %q", c.AttributePrefix))
	}
	return errors.Join(errs...)
}
