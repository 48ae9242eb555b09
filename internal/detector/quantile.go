package detector

import (
	"unsafe"

	"github.com/otel-iforest/iforest/internal/heapsize"
)

import "math"

// scoreQuantile estimates high quantiles of a series' recent scores with a
// fixed-bin histogram whose old counts fade out exponentially, so the
// adaptive threshold follows the series without keeping every score.
type scoreQuantile struct {
	bins  [quantBins]float32
	inc   float32 // weight of the next score; grows instead of decaying all bins
	grow  float32
	total float32
	n     int // scores added, for knowing when the estimate means something
}

const quantBins = 200

func (q *scoreQuantile) memBytes() int { return heapsize.Of(int(unsafe.Sizeof(*q)), false) }

func newScoreQuantile(halfLifePoints int) *scoreQuantile {
	// Weight growth per point such that a score's relative weight halves
	// every halfLifePoints points.
	return &scoreQuantile{inc: 1, grow: float32(math.Exp2(1 / float64(halfLifePoints)))}
}

func (q *scoreQuantile) add(score float64) {
	b := int(score * quantBins)
	b = max(0, min(quantBins-1, b))
	q.bins[b] += q.inc
	q.total += q.inc
	q.n++
	q.inc *= q.grow
	if q.inc > 1e30 { // rescale before float32 overflows
		for i := range q.bins {
			q.bins[i] /= q.inc
		}
		q.total /= q.inc
		q.inc = 1
	}
}

// threshold returns the score above which a fraction c of recent scores lie,
// never below 0.5: under 0.5 an isolation forest sees nothing distinct.
// Until there are enough scores to estimate that quantile it returns
// fallback.
func (q *scoreQuantile) threshold(c, fallback float64) float64 {
	if float64(q.n)*c < 1 {
		return fallback
	}
	want := float32(c) * q.total
	acc := float32(0)
	for b := quantBins - 1; b >= 0; b-- {
		acc += q.bins[b]
		if acc > want {
			return max(0.5, float64(b+1)/quantBins)
		}
	}
	return 0.5
}
