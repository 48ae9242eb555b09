package detector

import "math"

// Kind says how an observation's raw values turn into model input.
type Kind uint8

const (
	// Gauge: V0 is the value as is (also used for non-monotonic cumulative sums).
	Gauge Kind = iota
	// CumulativeSum: V0 is a running total; the model sees its rate per second.
	CumulativeSum
	// DeltaSum: V0 is the increase over [Start, Time]; the model sees its rate per second.
	DeltaSum
	// CumulativeHistogram: V0 is the running count, V1 the running sum; the
	// model sees the count rate and the mean of the interval's observations.
	CumulativeHistogram
	// DeltaHistogram: V0 is the interval's count, V1 its sum.
	DeltaHistogram
	// Vector: a joined multivariate observation (see ObserveMembers).
	Vector
)

// dims is the number of model inputs a kind produces.
func (k Kind) dims() int {
	if k == CumulativeHistogram || k == DeltaHistogram {
		return 2
	}
	return 1
}

// Point is one observation of one series.
type Point struct {
	Key   uint64
	Kind  Kind
	Start int64 // unix nanoseconds; start of the cumulative or delta interval, 0 if unknown
	Time  int64 // unix nanoseconds; 0 if unknown
	V0    float64
	V1    float64
	// Ratio says the values lie in [0, 1] (a utilisation), which bounds the
	// expected band.
	Ratio bool
}

// Status says whether a point was scored and, if not, why.
type Status uint8

const (
	// Scored: the point got a verdict.
	Scored Status = iota
	// Warmup: the model has not seen enough history yet; the point was learned.
	Warmup
	// FirstPoint: a rate needs two points; this one only primes the series.
	FirstPoint
	// CounterReset: a cumulative value went down or its start time moved;
	// the series restarts its rate from this point.
	CounterReset
	// OutOfOrder: the point is not newer than the last one of its series.
	OutOfOrder
	// InvalidValue: NaN, infinity, or a rate that overflowed.
	InvalidValue
	// OverLimit: no model could be created for the series (memory limit).
	OverLimit
	// Incomplete: a multivariate model lacks a fresh value of some member.
	Incomplete
	// FutureTime: the point's time lies further ahead of the caller's
	// clock than Config.MaxTimeAhead; it is not learned.
	FutureTime
	numStatus
)

var statusNames = [numStatus]string{"scored", "warmup", "first_point", "counter_reset", "out_of_order", "invalid_value", "over_limit", "incomplete", "future_timestamp"}

func (s Status) String() string {
	if s < numStatus {
		return statusNames[s]
	}
	return "unknown"
}

// Verdict is the outcome of one observation.
type Verdict struct {
	Status    Status
	Score     float64 // in [0,1], higher is more anomalous; set when Status == Scored
	Threshold float64 // threshold in force for this point
	Anomaly   bool

	// For anomalous points of one-input models: the range of the point's own
	// value (in the datapoint's units, e.g. the counter value for a
	// cumulative sum) that the model would have called normal.
	ExpectedMin, ExpectedMax float64
	HasExpected              bool
	// For anomalous points of multivariate models: each feature's share in
	// isolating the point (depth-based attribution), summing to 1.
	Contributions []float64

	// Incident is set on the points that open or close an incident;
	// IncidentID on those and on every scored point while one is open.
	Incident   Transition
	IncidentID uint64
	// On Ended: time from the opening point to this one (nanoseconds) and
	// the highest score seen in the incident.
	IncidentDuration int64
	IncidentPeak     float64
}

// rateState is what a series remembers to turn totals into rates.
type rateState struct {
	start    int64
	time     int64
	v0, v1   float64
	lastMean float64
	primed   bool
	// The last point's value is offset + input*scale, so bands found in
	// input space (rates) can be told in the datapoint's own units.
	offset, scale float64
}

// toInputs converts a raw point into model inputs written to out (len >= dims).
// It updates the rate state; it reports a non-Scored status when the point
// cannot produce inputs.
func (rs *rateState) toInputs(p *Point, out []float64) Status {
	if isBad(p.V0) || isBad(p.V1) {
		return InvalidValue
	}
	if rs.outOfOrder(p.Time) {
		return OutOfOrder
	}
	prev := *rs
	rs.time = p.Time
	switch p.Kind {
	case Gauge:
		out[0] = p.V0
		rs.offset, rs.scale = 0, 1
		return Scored
	case DeltaSum, DeltaHistogram:
		dt := intervalSeconds(p.Start, p.Time, prev.time)
		if dt == 0 {
			return FirstPoint
		}
		out[0] = p.V0 / dt
		rs.offset, rs.scale = 0, dt
		if p.Kind == DeltaHistogram {
			out[1] = rs.mean(p.V0, p.V1)
		}
		return finite(out, p.Kind.dims())
	default: // cumulative kinds
		rs.start, rs.v0, rs.v1, rs.primed = p.Start, p.V0, p.V1, true
		if !prev.primed {
			return FirstPoint
		}
		if (p.Start != 0 && prev.start != 0 && p.Start != prev.start) || p.V0 < prev.v0 {
			return CounterReset
		}
		dt := intervalSeconds(0, p.Time, prev.time)
		if dt == 0 {
			return FirstPoint
		}
		dc := p.V0 - prev.v0
		out[0] = dc / dt
		rs.offset, rs.scale = prev.v0, dt
		if p.Kind == CumulativeHistogram {
			out[1] = rs.mean(dc, p.V1-prev.v1)
		}
		return finite(out, p.Kind.dims())
	}
}

// outOfOrder says whether a point of time t is not newer than the last one.
func (rs *rateState) outOfOrder(t int64) bool {
	return rs.time != 0 && t != 0 && t <= rs.time
}

// mean of an interval's observations; an interval without observations
// repeats the last mean so that "no traffic" does not look like a jump to 0.
func (rs *rateState) mean(count, sum float64) float64 {
	if count > 0 {
		rs.lastMean = sum / count
	}
	return rs.lastMean
}

// intervalSeconds prefers the point's own interval and falls back to the time
// since the series' previous point. Without timestamps at all a rate is taken
// per point (1); 0 means the interval cannot be known yet.
func intervalSeconds(start, t, prevT int64) float64 {
	switch {
	case t == 0:
		return 1
	case start != 0 && t > start:
		return float64(t-start) / 1e9
	case prevT != 0 && t > prevT:
		return float64(t-prevT) / 1e9
	}
	return 0
}

func isBad(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) }

func finite(x []float64, n int) Status {
	for _, v := range x[:n] {
		if isBad(v) {
			return InvalidValue
		}
	}
	return Scored
}
