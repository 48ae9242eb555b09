// Package detector runs streaming isolation-forest detection per model key.
// It knows nothing of pdata: callers hand it observations (a key, a time and
// one or two raw values) and get a verdict back.
package detector

// Config holds the model settings shared by every series of one detector.
// The caller validates it (the processor names its keys); New relies on
// Trees, SampleSize, WindowSize, RefitInterval >= 1, SampleSize <=
// forest.MaxSampleSize and MinWarmup <= Warmup <= WindowSize.
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
	// MaxTimeAhead (nanoseconds), when > 0, is how far a point's time may
	// lie ahead of the caller's clock (now); points further ahead are not
	// learned (FutureTime), so they cannot become a series' clock.
	MaxTimeAhead int64
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
	// allTrees scores every point over all the forest's trees, without
	// judge's early exit: for tests that compare the two.
	allTrees bool
}

// DefaultConfig returns settings that work without tuning on series sampled
// every few seconds to minutes.
func DefaultConfig() Config {
	return Config{
		Trees:         16,
		SampleSize:    32,
		WindowSize:    1024,
		Warmup:        32,
		RefitInterval: 16,
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
