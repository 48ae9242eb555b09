package anomalyeventsconnector

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"

	"github.com/otel-iforest/iforest/internal/confcheck"
	"github.com/otel-iforest/iforest/internal/verdict"
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
	// AcceptRemoteVerdicts takes verdict attributes as they come. By default
	// only verdicts issued by an iforest processor of this collector become
	// events (see the README's trust model).
	AcceptRemoteVerdicts bool `mapstructure:"accept_remote_verdicts"`

	// GroupBy lists resource attributes that name an entity (e.g.
	// host.name). With it, the incidents of an entity's series that start
	// within GroupWindow of the first one are reported as one incident.
	// Empty: one event per series.
	GroupBy []string `mapstructure:"group_by"`
	// GroupWindow is how long after an entity incident's first series
	// other series may join it (datapoint time).
	GroupWindow time.Duration `mapstructure:"group_window"`
	// MaxOpenGroups bounds the entity incidents held open.
	MaxOpenGroups int `mapstructure:"max_open_groups"`

	// Rate configures the anomaly.rate gauge of the metrics -> metrics
	// connector.
	Rate RateConfig `mapstructure:"rate"`

	// prevent unkeyed literal initialization
	_ struct{}
}

// RateConfig configures the anomaly rate per entity.
type RateConfig struct {
	// Interval is the length of the intervals each rate is computed over
	// (datapoint time).
	Interval time.Duration `mapstructure:"interval"`
	// MaxEntities bounds the entities tracked.
	MaxEntities int `mapstructure:"max_entities"`

	// prevent unkeyed literal initialization
	_ struct{}
}

var _ component.Config = (*Config)(nil)

func createDefaultConfig() component.Config {
	return &Config{
		AttributePrefix:         verdict.DefaultPrefix,
		EmitDatapoints:          false,
		IncludeMetricAttributes: true,
		GroupWindow:             time.Minute,
		MaxOpenGroups:           1000,
		Rate: RateConfig{
			Interval:    time.Minute,
			MaxEntities: 10000,
		},
	}
}

// Unmarshal decodes the connector's section after checking its raw values
// for what confmap would silently change (`max_open_groups: 1.5` read as 1,
// `group_window: 60` as 60ns), naming each key.
func (c *Config) Unmarshal(conf *confmap.Conf) error {
	if conf == nil {
		return nil
	}
	if errs := confcheck.Values(conf.ToStringMap(), reflect.TypeFor[Config]()); len(errs) > 0 {
		return errors.Join(errs...)
	}
	return conf.Unmarshal(c)
}

// Validate checks every key and names the offending ones.
func (c *Config) Validate() error {
	var errs []error
	if c.AttributePrefix == "" {
		errs = append(errs, errors.New("attribute_prefix: must not be empty (it must match the iforest processor's output.attribute_prefix, default \"anomaly.\")"))
	} else if strings.TrimSpace(c.AttributePrefix) != c.AttributePrefix {
		errs = append(errs, fmt.Errorf("attribute_prefix: must not start or end with white space, got %q", c.AttributePrefix))
	}
	seen := map[string]bool{}
	for i, k := range c.GroupBy {
		switch {
		case strings.TrimSpace(k) == "":
			errs = append(errs, fmt.Errorf("group_by[%d]: must be a resource attribute key, got %q", i, k))
		case seen[k]:
			errs = append(errs, fmt.Errorf("group_by[%d]: %q is listed twice", i, k))
		}
		seen[k] = true
	}
	errs = append(errs, atLeastASecond("group_window", c.GroupWindow), atLeastASecond("rate.interval", c.Rate.Interval))
	if c.MaxOpenGroups < 1 {
		errs = append(errs, fmt.Errorf("max_open_groups: must be at least 1, got %d", c.MaxOpenGroups))
	}
	if c.Rate.MaxEntities < 1 {
		errs = append(errs, fmt.Errorf("rate.max_entities: must be at least 1, got %d", c.Rate.MaxEntities))
	}
	return errors.Join(errs...)
}

// atLeastASecond rejects durations under a second, which also catches a
// number written without a unit (read as nanoseconds).
func atLeastASecond(key string, d time.Duration) error {
	if d < time.Second {
		return fmt.Errorf("%s: must be a duration of at least 1s, with a unit (e.g. 1m), got %v", key, d)
	}
	return nil
}
