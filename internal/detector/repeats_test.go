package detector

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRepeatsDamping(t *testing.T) {
	const thr = 0.8
	var r repeats
	steps := []struct{ in, want float64 }{
		{0.5, 0.5},
		{0.9, 0.9},   // first flag: an episode opens
		{0.85, 0.85}, // continues the run
		{0.5, 0.5},
		{0.88, 0.44}, // renewed, no higher than 0.9: halved
		{0.5, 0.5},
		{0.95, 0.95}, // renewed and worse: reported
		{0.5, 0.5},
		{0.9, 0.45},
	}
	for i, s := range steps {
		assert.InDelta(t, s.want, r.damp(3, s.in, thr), 1e-12, "step %d", i)
	}
	// Three normal points close the episode: the next flag is news.
	for range 3 {
		r.damp(3, 0.5, thr)
	}
	assert.Equal(t, 0.85, r.damp(3, 0.85, thr))
	// A halved flag does not start a run.
	r.damp(3, 0.5, thr)
	assert.Equal(t, 0.4, r.damp(3, 0.8, thr))
	assert.Equal(t, 0.41, r.damp(3, 0.82, thr))

	var off repeats
	for _, s := range steps {
		assert.Equal(t, s.in, off.damp(0, s.in, thr), "0 switches it off")
	}
}

// A spike of several points stays flagged on every point.
func TestRepeatsKeepRuns(t *testing.T) {
	var r repeats
	for i, s := range []float64{0.9, 0.82, 0.81, 0.85, 0.83} {
		assert.Equal(t, s, r.damp(100, s, 0.8), "point %d of the spike", i)
	}
}
