// Package detector runs streaming isolation-forest detection per model key.
// It knows nothing of pdata: callers hand it observations (a key, a time and
// one or two raw values) and get a verdict back.
package detector

import (
	"errors"
	"fmt"
	"math"

	"github.com/otel-iforest/iforest/internal/forest"
)

// Config holds the model settings shared by every series of one detector.
type Config struct {
	// Trees is the number of isolation trees per model.
	Trees int
	// SampleSize is psi, the subsample each tree is built on.
	SampleSize int
	// WindowSize is how many recent observations a model keeps to learn from.
	WindowSize int
	// Warmup is how many observations a model must have learned before it
	// gives verdicts.
	Warmup int
	// RefitInterval is the number of learned observations between two tree
	// rebuilds. A model rebuilds one tree at a time, so a full forest turns
	// over every Trees*RefitInterval observations.
	RefitInterval int
	// Threshold is the fixed score at or above which a point is anomalous.
	// With Contamination set it only applies until a series has enough
	// scores to estimate its quantile.
	Threshold float64
	// Contamination, when > 0, makes the threshold adaptive per series: the
	// (1-Contamination) quantile of the series' recent scores (never below
	// 0.5).
	Contamination float64
	// Lookback, when > 0, gives one-input models a second input: the
	// value's departure from the mean of the previous Lookback points (see
	// lookback.go).
	Lookback int
	// Seed makes every model's randomness reproducible.
	Seed uint64
	// Shards splits the series map so concurrent callers rarely contend.
	Shards int
	// Incidents groups anomalous points into incidents.
	Incidents IncidentConfig

	// Seasonality says which time context one-input series are judged in
	// (season.go).
	Seasonality Seasonality
	// MinDeviation: a one-input point whose residual is within this
	// fraction of its series' level never flags; MinDeviationAbs is the
	// same in the metric's own unit.
	MinDeviation    float64
	MinDeviationAbs float64

	// plain models judge their inputs as they come, without time context
	// or calibration (the high-cardinality mode's group models, whose
	// inputs are many series' deviations in arrival order).
	plain bool
}

// DefaultConfig returns settings that work without tuning on series sampled
// every few seconds to minutes.
func DefaultConfig() Config {
	return Config{
		Trees:         32,
		SampleSize:    32,
		WindowSize:    1024,
		Warmup:        32,
		RefitInterval: 8,
		Threshold:     0.8,
		Contamination: 0,
		Lookback:      20,
		Seed:          1,
		Shards:        64,
		Incidents:     DefaultIncidentConfig(),
		Seasonality:   SeasonalityAuto,
		MinDeviation:  0.02,
	}
}

// Validate reports the first setting that is out of range. Field names in
// messages are the processor's YAML keys so users can find them.
func (c Config) Validate() error {
	var errs []error
	if c.Trees < 1 || c.Trees > 1000 {
		errs = append(errs, fmt.Errorf("trees: must be between 1 and 1000, got %d", c.Trees))
	}
	if c.SampleSize < 2 || c.SampleSize > forest.MaxSampleSize {
		errs = append(errs, fmt.Errorf("sample_size: must be between 2 and %d, got %d", forest.MaxSampleSize, c.SampleSize))
	}
	if c.WindowSize < 2 || c.WindowSize > 1<<20 {
		errs = append(errs, fmt.Errorf("window_size: must be between 2 and %d, got %d", 1<<20, c.WindowSize))
	}
	if c.Warmup < minTrain || c.Warmup > c.WindowSize {
		errs = append(errs, fmt.Errorf("warmup: must be between %d and window_size (%d), got %d", minTrain, c.WindowSize, c.Warmup))
	}
	if c.Lookback < 0 || c.Lookback >= c.WindowSize {
		errs = append(errs, fmt.Errorf("lookback: must be between 0 (off) and window_size - 1 (%d), got %d", c.WindowSize-1, c.Lookback))
	}
	if c.RefitInterval < 1 {
		errs = append(errs, fmt.Errorf("refit_interval: must be at least 1, got %d", c.RefitInterval))
	}
	if !(c.Threshold > 0 && c.Threshold < 1) {
		errs = append(errs, fmt.Errorf("threshold: must be in (0, 1), got %v", c.Threshold))
	}
	if !(c.Contamination >= 0 && c.Contamination < 0.5) {
		errs = append(errs, fmt.Errorf("contamination: must be in [0, 0.5), got %v", c.Contamination))
	}
	if c.Seasonality > SeasonalityWeekly {
		errs = append(errs, fmt.Errorf("seasonality: must be one of %q, got %d", seasonalityNames, c.Seasonality))
	}
	if !(c.MinDeviation >= 0 && c.MinDeviation < 1) {
		errs = append(errs, fmt.Errorf("min_deviation.relative: must be in [0, 1), got %v", c.MinDeviation))
	}
	if !(c.MinDeviationAbs >= 0 && c.MinDeviationAbs <= math.MaxFloat64) {
		errs = append(errs, fmt.Errorf("min_deviation.absolute: must be 0 or more, got %v", c.MinDeviationAbs))
	}
	if c.Shards < 1 {
		errs = append(errs, fmt.Errorf("shards: must be at least 1, got %d", c.Shards))
	}
	errs = append(errs, c.Incidents.Validate())
	return errors.Join(errs...)
}
