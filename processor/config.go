package iforestprocessor

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"go.opentelemetry.io/collector/component"

	"github.com/otel-iforest/iforest/internal/detector"
)

// Config is the iforest processor's configuration. Every key has a default
// that works without tuning; see the README for what each one does.
type Config struct {
	// Forest and streaming settings, per series model.
	Trees         int     `mapstructure:"trees"`
	SampleSize    int     `mapstructure:"sample_size"`
	WindowSize    int     `mapstructure:"window_size"`
	Warmup        int     `mapstructure:"warmup"`
	RefitInterval int     `mapstructure:"refit_interval"`
	Threshold     float64 `mapstructure:"threshold"`
	Contamination float64 `mapstructure:"contamination"`
	Lookback      int     `mapstructure:"lookback"`
	Seed          uint64  `mapstructure:"seed"`

	// Metrics selects the metrics to score by name.
	Metrics MetricSelection `mapstructure:"metrics"`
	// SummaryQuantile scores summaries by this quantile's value; unset
	// scores their count rate and mean.
	SummaryQuantile *float64 `mapstructure:"summary_quantile"`

	// Models are multivariate models, each joining several metrics of one
	// entity. Datapoints they take are not also scored on their own.
	Models []ModelConfig `mapstructure:"models"`
	// Univariate scores every selected datapoint that no model takes with a
	// model of its own series.
	Univariate bool `mapstructure:"univariate"`

	// HighCardinality replaces per-series models of univariate datapoints
	// by one model per metric (see HighCardinalityConfig).
	HighCardinality HighCardinalityConfig `mapstructure:"high_cardinality"`

	// Incidents groups a series' anomalous points into incidents.
	Incidents IncidentsConfig `mapstructure:"incidents"`

	// Output says how verdicts are attached to the forwarded metrics.
	Output OutputConfig `mapstructure:"output"`

	// MaxSeries caps the models held; datapoints of further series pass
	// through unscored and are counted. 0 means no limit.
	MaxSeries int `mapstructure:"max_series"`
	// SeriesTTL drops the model of a series not seen for this long.
	SeriesTTL time.Duration `mapstructure:"series_ttl"`

	// Storage names a storage extension (e.g. file_storage) in which the
	// models are saved, so that a restart resumes them (see persist.go).
	// Unset keeps them in memory only.
	Storage *component.ID `mapstructure:"storage"`
	// CheckpointInterval is how often the models are saved while data flows
	// (they are saved at shutdown too).
	CheckpointInterval time.Duration `mapstructure:"checkpoint_interval"`

	// Operator holds rules, rules_file, feedback and feedback_ttl (rules.go).
	Operator OperatorConfig `mapstructure:",squash"`

	// prevent unkeyed literal initialization
	_ struct{}
}

// MetricSelection picks metrics by name with anchored regular expressions.
// A metric is scored when it matches an include pattern (or include is
// empty) and matches no exclude pattern.
type MetricSelection struct {
	Include []string `mapstructure:"include"`
	Exclude []string `mapstructure:"exclude"`
}

// IncidentsConfig says when an incident opens and closes on a series.
type IncidentsConfig struct {
	// OpenAfter anomalous points among the last OpenWindow scored points
	// open an incident.
	OpenAfter  int `mapstructure:"open_after"`
	OpenWindow int `mapstructure:"open_window"`
	// CloseAfter consecutive normal points close it.
	CloseAfter int `mapstructure:"close_after"`
	// Cooldown scored points after an end before a new incident may open.
	Cooldown int `mapstructure:"cooldown"`
	// SuppressRepeats is how long (points) after a flag a renewed flag that
	// is no new peak has its score halved; 0 is off.
	SuppressRepeats int `mapstructure:"suppress_repeats"`
}

// Output modes.
const (
	OutputAttributes = "attributes"
	OutputMetric     = "metric"
	OutputBoth       = "both"
)

// OutputConfig controls what the processor writes.
type OutputConfig struct {
	// Mode is "attributes" (verdict attributes on each scored datapoint),
	// "metric" (separate score metrics, source datapoints untouched) or
	// "both".
	Mode string `mapstructure:"mode"`
	// AttributePrefix starts the names of the attributes written on
	// datapoints: <prefix>score, <prefix>detected, <prefix>threshold, ...
	AttributePrefix string `mapstructure:"attribute_prefix"`
	// MetricSuffix is appended to a metric's name to name its score metric;
	// the flag metric gets MetricSuffix's stem plus "_detected".
	MetricSuffix string `mapstructure:"metric_suffix"`
}

var _ component.Config = (*Config)(nil)

func createDefaultConfig() component.Config {
	d := detector.DefaultConfig()
	return &Config{
		Trees:         d.Trees,
		SampleSize:    d.SampleSize,
		WindowSize:    d.WindowSize,
		Warmup:        d.Warmup,
		RefitInterval: d.RefitInterval,
		Threshold:     d.Threshold,
		Contamination: d.Contamination,
		Lookback:      d.Lookback,
		Seed:          d.Seed,
		Incidents: IncidentsConfig{
			OpenAfter:       d.Incidents.OpenAfter,
			OpenWindow:      d.Incidents.OpenWindow,
			CloseAfter:      d.Incidents.CloseAfter,
			Cooldown:        d.Incidents.Cooldown,
			SuppressRepeats: d.Incidents.SuppressRepeats,
		},
		Output: OutputConfig{
			Mode:            OutputAttributes,
			AttributePrefix: "anomaly.",
			MetricSuffix:    ".anomaly_score",
		},
		Univariate:         true,
		HighCardinality:    HighCardinalityConfig{Warmup: 8, MaxSeries: 1000000},
		MaxSeries:          10000,
		SeriesTTL:          time.Hour,
		CheckpointInterval: time.Minute,
		Operator:           OperatorConfig{FeedbackTTL: defaultFeedbackTTL},
	}
}

// HighCardinalityConfig is the high-cardinality mode: one model per metric
// (and per value of the group_by attributes) learns the standardised
// deviations of all its series, and each series keeps only its own level
// and spread (a few hundred bytes instead of a forest).
type HighCardinalityConfig struct {
	// Enabled switches univariate datapoints to the shared models.
	Enabled bool `mapstructure:"enabled"`
	// GroupBy splits a metric's model by these attributes (looked up on the
	// datapoint, then on the resource), e.g. [service.name].
	GroupBy []string `mapstructure:"group_by"`
	// Warmup is the points a series needs before its baseline is used.
	Warmup int `mapstructure:"warmup"`
	// MaxSeries caps the series baselines held (0 = no limit).
	MaxSeries int `mapstructure:"max_series"`
}

func (c *Config) detectorConfig() detector.Config {
	d := detector.DefaultConfig()
	d.Trees = c.Trees
	d.SampleSize = c.SampleSize
	d.WindowSize = c.WindowSize
	d.Warmup = c.Warmup
	d.RefitInterval = c.RefitInterval
	d.Threshold = c.Threshold
	d.Contamination = c.Contamination
	d.Lookback = c.Lookback
	d.Seed = c.Seed
	d.Incidents = detector.IncidentConfig{
		OpenAfter:       c.Incidents.OpenAfter,
		OpenWindow:      c.Incidents.OpenWindow,
		CloseAfter:      c.Incidents.CloseAfter,
		Cooldown:        c.Incidents.Cooldown,
		SuppressRepeats: c.Incidents.SuppressRepeats,
	}
	return d
}

// Validate checks every key and names the offending ones.
func (c *Config) Validate() error {
	errs := []error{c.detectorConfig().Validate()}
	for i, p := range c.Metrics.Include {
		if _, err := compileAnchored(p); err != nil {
			errs = append(errs, fmt.Errorf("metrics.include[%d]: invalid regular expression %q: %w", i, p, err))
		}
	}
	for i, p := range c.Metrics.Exclude {
		if _, err := compileAnchored(p); err != nil {
			errs = append(errs, fmt.Errorf("metrics.exclude[%d]: invalid regular expression %q: %w", i, p, err))
		}
	}
	seen := map[string]bool{}
	for i := range c.Models {
		m := &c.Models[i]
		if err := m.validate(i, seen); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := m.detectorConfig(c.detectorConfig()).Validate(); err != nil {
			errs = append(errs, fmt.Errorf("models[%d] (%s): %w", i, m.Name, err))
		}
	}
	if q := c.SummaryQuantile; q != nil && !(*q >= 0 && *q <= 1) {
		errs = append(errs, fmt.Errorf("summary_quantile: must be in [0, 1], got %v", *q))
	}
	switch c.Output.Mode {
	case OutputAttributes, OutputMetric, OutputBoth:
	default:
		errs = append(errs, fmt.Errorf("output.mode: must be one of %q, %q, %q, got %q", OutputAttributes, OutputMetric, OutputBoth, c.Output.Mode))
	}
	if c.Output.Mode != OutputMetric && c.Output.AttributePrefix == "" {
		errs = append(errs, errors.New("output.attribute_prefix: must not be empty (attributes would overwrite the datapoint's own)"))
	}
	if c.Output.Mode != OutputAttributes && c.Output.MetricSuffix == "" {
		errs = append(errs, errors.New("output.metric_suffix: must not be empty (the score metric would take the source metric's name)"))
	}
	hc := &c.HighCardinality
	if hc.Warmup < 2 || hc.Warmup > c.WindowSize {
		errs = append(errs, fmt.Errorf("high_cardinality.warmup: must be between 2 and window_size (%d), got %d", c.WindowSize, hc.Warmup))
	}
	if hc.MaxSeries < 0 {
		errs = append(errs, fmt.Errorf("high_cardinality.max_series: must be 0 (no limit) or positive, got %d", hc.MaxSeries))
	}
	for i, k := range hc.GroupBy {
		if k == "" {
			errs = append(errs, fmt.Errorf("high_cardinality.group_by[%d]: must not be empty", i))
		}
	}
	if c.MaxSeries < 0 {
		errs = append(errs, fmt.Errorf("max_series: must be 0 (no limit) or positive, got %d", c.MaxSeries))
	}
	if c.SeriesTTL < 0 {
		errs = append(errs, fmt.Errorf("series_ttl: must be 0 (never) or positive, got %v", c.SeriesTTL))
	}
	errs = append(errs, c.validatePersistence())
	errs = append(errs, c.Operator.validate())
	return errors.Join(errs...)
}

func compileAnchored(p string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:` + p + `)$`)
}
