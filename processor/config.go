package iforestprocessor

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"time"

	"go.opentelemetry.io/collector/component"

	"github.com/otel-iforest/iforest/internal/detector"
	"github.com/otel-iforest/iforest/internal/forest"
	"github.com/otel-iforest/iforest/internal/verdict"
)

// Config is the iforest processor's configuration. Every key has a default
// that works without tuning; see the README for what each one does.
type Config struct {
	// Forest settings of the per-series models, and the defaults of
	// models[] (see Unmarshal).
	ForestConfig `mapstructure:",squash"`
	// Lookback and Seed apply to per-series models (a joined model takes
	// no derived input, and derives its seed from its name).
	Lookback int    `mapstructure:"lookback"`
	Seed     uint64 `mapstructure:"seed"`

	// Seasonality is the time context one-input series are judged in:
	// auto (a daily or weekly cycle when the series has one), none, daily
	// or weekly.
	Seasonality string `mapstructure:"seasonality"`
	// MinDeviation: a move too small to matter never flags.
	MinDeviation MinDeviationConfig `mapstructure:"min_deviation"`

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
	// MaxTimeAhead is how far a datapoint's timestamp may lie ahead of the
	// collector's clock; points further ahead are skipped (a clock of a
	// series that jumped into the future would make every later point
	// look out of order).
	MaxTimeAhead time.Duration `mapstructure:"max_time_ahead"`

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

// ForestConfig is the forest and streaming settings of one kind of model:
// the per-series models at the top level, and each of models[].
type ForestConfig struct {
	Trees         int     `mapstructure:"trees"`
	SampleSize    int     `mapstructure:"sample_size"`
	WindowSize    int     `mapstructure:"window_size"`
	Warmup        int     `mapstructure:"warmup"`
	RefitInterval int     `mapstructure:"refit_interval"`
	Threshold     float64 `mapstructure:"threshold"`
	Contamination float64 `mapstructure:"contamination"`
}

// MetricSelection picks metrics by name with anchored regular expressions.
// A metric is scored when it matches an include pattern (or include is
// empty) and matches no exclude pattern.
type MetricSelection struct {
	Include []string `mapstructure:"include"`
	Exclude []string `mapstructure:"exclude"`
}

// MinDeviationConfig is the smallest departure from what a one-input
// series' context predicts that may flag: the larger of Relative times the
// series' usual level and Absolute (in the metric's unit).
type MinDeviationConfig struct {
	Relative float64 `mapstructure:"relative"`
	Absolute float64 `mapstructure:"absolute"`
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
	// NewNormalAfter is how long a one-input series' incident is judged
	// against the model from before it: a sustained anomaly stays one
	// this long, unless it ends first. 0 is off.
	NewNormalAfter time.Duration `mapstructure:"new_normal_after"`
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
	// MetricSuffix is appended to a metric's name to name its score metric
	// (metric mode writes the score only; the flag is an attribute).
	MetricSuffix string `mapstructure:"metric_suffix"`
}

var _ component.Config = (*Config)(nil)

func createDefaultConfig() component.Config {
	d := detector.DefaultConfig()
	return &Config{
		ForestConfig: ForestConfig{
			Trees:         d.Trees,
			SampleSize:    d.SampleSize,
			WindowSize:    d.WindowSize,
			Warmup:        d.Warmup,
			RefitInterval: d.RefitInterval,
			Threshold:     d.Threshold,
			Contamination: d.Contamination,
		},
		Lookback:     d.Lookback,
		Seed:         d.Seed,
		Seasonality:  d.Seasonality.String(),
		MinDeviation: MinDeviationConfig{Relative: d.MinDeviation, Absolute: d.MinDeviationAbs},
		Incidents: IncidentsConfig{
			OpenAfter:       d.Incidents.OpenAfter,
			OpenWindow:      d.Incidents.OpenWindow,
			CloseAfter:      d.Incidents.CloseAfter,
			Cooldown:        d.Incidents.Cooldown,
			SuppressRepeats: d.Incidents.SuppressRepeats,
			NewNormalAfter:  time.Duration(d.Incidents.NewNormalAfter),
		},
		Output: OutputConfig{
			Mode:            OutputAttributes,
			AttributePrefix: verdict.DefaultPrefix,
			MetricSuffix:    ".anomaly_score",
		},
		Univariate:         true,
		HighCardinality:    HighCardinalityConfig{Warmup: 8, MaxSeries: 1000000, MaxGroups: 1000},
		MaxSeries:          10000,
		SeriesTTL:          time.Hour,
		MaxTimeAhead:       5 * time.Minute,
		CheckpointInterval: time.Minute,
		Operator:           OperatorConfig{FeedbackTTL: defaultFeedbackTTL},
	}
}

// HighCardinalityConfig is the high-cardinality mode: one model per metric
// (and per value of the group_by attributes) learns the standardised
// deviations of all its series, and each series keeps only its own level
// and spread (a few hundred bytes instead of a forest).
type HighCardinalityConfig struct {
	// Enabled switches univariate datapoints to the group models.
	Enabled bool `mapstructure:"enabled"`
	// GroupBy splits a metric's model by these attributes (looked up on the
	// datapoint, then on the resource), e.g. [service.name].
	GroupBy []string `mapstructure:"group_by"`
	// Warmup is the points a series needs before its baseline is used.
	Warmup int `mapstructure:"warmup"`
	// MaxSeries caps the series baselines held (0 = no limit).
	MaxSeries int `mapstructure:"max_series"`
	// MaxGroups caps the group models held (0 = no limit).
	MaxGroups int `mapstructure:"max_groups"`
}

func (c *Config) detectorConfig() detector.Config {
	d := c.ForestConfig.detectorConfig(detector.DefaultConfig())
	d.Lookback = c.Lookback
	d.Seed = c.Seed
	d.MaxTimeAhead = int64(c.MaxTimeAhead)
	d.Seasonality, _ = detector.ParseSeasonality(c.Seasonality) // checked by Validate
	d.MinDeviation, d.MinDeviationAbs = c.MinDeviation.Relative, c.MinDeviation.Absolute
	d.Incidents = detector.IncidentConfig{
		OpenAfter:       c.Incidents.OpenAfter,
		OpenWindow:      c.Incidents.OpenWindow,
		CloseAfter:      c.Incidents.CloseAfter,
		Cooldown:        c.Incidents.Cooldown,
		SuppressRepeats: c.Incidents.SuppressRepeats,
		NewNormalAfter:  int64(c.Incidents.NewNormalAfter),
	}
	return d
}

// detectorConfig is base with these forest settings.
func (f *ForestConfig) detectorConfig(base detector.Config) detector.Config {
	base.Trees = f.Trees
	base.SampleSize = f.SampleSize
	base.WindowSize = f.WindowSize
	base.Warmup = f.Warmup
	base.RefitInterval = f.RefitInterval
	base.Threshold = f.Threshold
	base.Contamination = f.Contamination
	return base
}

// Smallest durations taken: below them a value is almost certainly a
// number written without its unit (confmap reads `series_ttl: 5` as 5ns),
// and a checkpoint every few nanoseconds would spin a core.
const (
	minInterval = time.Second
	unitHint    = " (did you forget the unit, e.g. 30s or 5m?)"
)

// Validate checks every key and names the offending ones.
func (c *Config) Validate() error {
	errs := []error{c.ForestConfig.validate(""), c.validateLookback(), c.Incidents.validate(), c.Operator.validate()}
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
		if err := m.ForestConfig.validate(""); err != nil {
			errs = append(errs, fmt.Errorf("models[%d] (%s): %w", i, m.Name, err))
		}
	}
	if _, ok := detector.ParseSeasonality(c.Seasonality); !ok {
		errs = append(errs, fmt.Errorf("seasonality: must be one of auto, none, daily, weekly, got %q", c.Seasonality))
	}
	if md := c.MinDeviation; !(md.Relative >= 0 && md.Relative < 1) {
		errs = append(errs, fmt.Errorf("min_deviation.relative: must be in [0, 1), got %v", md.Relative))
	}
	if md := c.MinDeviation; !(md.Absolute >= 0 && md.Absolute <= math.MaxFloat64) {
		errs = append(errs, fmt.Errorf("min_deviation.absolute: must be 0 or more, got %v", md.Absolute))
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
	if hc.MaxGroups < 0 {
		errs = append(errs, fmt.Errorf("high_cardinality.max_groups: must be 0 (no limit) or positive, got %d", hc.MaxGroups))
	}
	for i, k := range hc.GroupBy {
		if k == "" {
			errs = append(errs, fmt.Errorf("high_cardinality.group_by[%d]: must not be empty", i))
		}
	}
	if c.MaxSeries < 0 {
		errs = append(errs, fmt.Errorf("max_series: must be 0 (no limit) or positive, got %d", c.MaxSeries))
	}
	if c.SeriesTTL < 0 || (c.SeriesTTL > 0 && c.SeriesTTL < minInterval) {
		errs = append(errs, fmt.Errorf("series_ttl: must be 0 (never) or at least %v, got %v%s", minInterval, c.SeriesTTL, hintIfTiny(c.SeriesTTL)))
	}
	if c.MaxTimeAhead < minInterval {
		errs = append(errs, fmt.Errorf("max_time_ahead: must be at least %v, got %v%s", minInterval, c.MaxTimeAhead, hintIfTiny(c.MaxTimeAhead)))
	}
	if c.CheckpointInterval < minInterval {
		errs = append(errs, fmt.Errorf("checkpoint_interval: must be at least %v, got %v%s", minInterval, c.CheckpointInterval, hintIfTiny(c.CheckpointInterval)))
	}
	return errors.Join(errs...)
}

// hintIfTiny suggests the missing unit for a positive duration that reads
// like a bare number.
func hintIfTiny(d time.Duration) string {
	if d > 0 && d < time.Millisecond {
		return unitHint
	}
	return ""
}

// validate checks forest settings; keys are prefixed with prefix.
func (f *ForestConfig) validate(prefix string) error {
	var errs []error
	if f.Trees < 1 || f.Trees > 1000 {
		errs = append(errs, fmt.Errorf("%strees: must be between 1 and 1000, got %d", prefix, f.Trees))
	}
	if f.SampleSize < 2 || f.SampleSize > forest.MaxSampleSize {
		errs = append(errs, fmt.Errorf("%ssample_size: must be between 2 and %d, got %d", prefix, forest.MaxSampleSize, f.SampleSize))
	}
	if f.WindowSize < 2 || f.WindowSize > maxWindow {
		errs = append(errs, fmt.Errorf("%swindow_size: must be between 2 and %d, got %d", prefix, maxWindow, f.WindowSize))
	}
	if f.Warmup < detector.MinWarmup || f.Warmup > f.WindowSize {
		errs = append(errs, fmt.Errorf("%swarmup: must be between %d and window_size (%d), got %d", prefix, detector.MinWarmup, f.WindowSize, f.Warmup))
	}
	if f.RefitInterval < 1 {
		errs = append(errs, fmt.Errorf("%srefit_interval: must be at least 1, got %d", prefix, f.RefitInterval))
	}
	if !(f.Threshold > 0 && f.Threshold < 1) {
		errs = append(errs, fmt.Errorf("%sthreshold: must be in (0, 1), got %v", prefix, f.Threshold))
	}
	if !(f.Contamination >= 0 && f.Contamination < 0.5) {
		errs = append(errs, fmt.Errorf("%scontamination: must be in [0, 0.5), got %v", prefix, f.Contamination))
	}
	return errors.Join(errs...)
}

// maxWindow is the largest window_size: 1 MiB points of 4 bytes per input.
const maxWindow = 1 << 20

func (c *Config) validateLookback() error {
	if c.Lookback < 0 || c.Lookback >= c.WindowSize {
		return fmt.Errorf("lookback: must be between 0 (off) and window_size - 1 (%d), got %d", c.WindowSize-1, c.Lookback)
	}
	return nil
}

func (c *IncidentsConfig) validate() error {
	var errs []error
	if c.OpenWindow < 1 || c.OpenWindow > 64 {
		errs = append(errs, fmt.Errorf("incidents.open_window: must be between 1 and 64, got %d", c.OpenWindow))
	}
	if c.OpenAfter < 1 || c.OpenAfter > c.OpenWindow {
		errs = append(errs, fmt.Errorf("incidents.open_after: must be between 1 and incidents.open_window (%d), got %d", c.OpenWindow, c.OpenAfter))
	}
	if c.CloseAfter < 1 {
		errs = append(errs, fmt.Errorf("incidents.close_after: must be at least 1, got %d", c.CloseAfter))
	}
	if c.Cooldown < 0 {
		errs = append(errs, fmt.Errorf("incidents.cooldown: must be 0 or more, got %d", c.Cooldown))
	}
	if c.SuppressRepeats < 0 {
		errs = append(errs, fmt.Errorf("incidents.suppress_repeats: must be 0 (off) or more, got %d", c.SuppressRepeats))
	}
	if c.NewNormalAfter < 0 {
		errs = append(errs, fmt.Errorf("incidents.new_normal_after: must be 0 (off) or positive, got %v", c.NewNormalAfter))
	}
	return errors.Join(errs...)
}

func compileAnchored(p string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:` + p + `)$`)
}
