package detector

import (
	"math"
	"unsafe"

	"github.com/otel-iforest/iforest/internal/heapsize"
)

// longRun is what a one-input series (a gauge, a sum) knows beyond its
// window: its time context (season.go), the calibration of its scores
// (calibrate.go), and the points of an open incident it holds back. With
// it, such a series is judged in four steps:
//
//  1. context: the value's residual r, its departure from what its time
//     context predicts (less the recent offset, or not, whichever is
//     smaller: a value back at what its time predicts is not news);
//  2. the forest: r and r's departure from the mean of the previous
//     lookback residuals are the forest's inputs; its score as if
//     inserted, lifted beyond the window's range (beyond.go), is the raw
//     score;
//  3. calibration: the raw score becomes the expected number of points a
//     week at least this unusual on this series, and the score 1/(1+e);
//  4. the move must matter: a residual within min_deviation of the level,
//     or within two of the series' quanta, never flags.
//
// An incident's points are held back from the window, the level and the
// calibration until the incident ends or has lasted NewNormalAfter: so a
// sustained anomaly stays one until it counts as the new normal, instead of
// until its own first points have become the window's normal.
type longRun struct {
	season season
	cal    calibrator

	held      []heldPoint // points of the open incident, not learned yet
	heldSince int64       // time of the first held point
	heldDev   float64     // sum of the held points' departures from their predictions

	spread float64 // mean absolute residual of the points learned
	// Each half hour of the day's usual residual, and how many residuals
	// it has taken in (up to slotMinPoints): see scaleFor.
	slotSpread [daySlots]float32
	slotN      [daySlots]uint8
	quantum    float64 // smallest change between two values seen
	prev       float64 // the previous value
	step       float64 // usual seconds between points (moving average)
	tlast      int64   // time of the previous point

	// For the point being judged.
	pred  [numPred]float64
	base  float64 // what its context predicts
	value float64 // its value, before the residual
	u     float64 // its surprise, for the calibration; -1 if not counted

	// The small fields last, together: no padding between them (see
	// TestLongRunSize).
	run      int32 // consecutive flagged points
	spreadN  int32
	accepted bool // the open incident lasted NewNormalAfter: learn as usual
	negative bool // a value below 0 was seen
	aboveOne bool // a value above aboveOneFrom was seen (a utilisation in percent)
	predOK   [numPred]bool
}

// heldPoint is a point of an open incident: its residual, and its surprise
// for the calibration (-1 if it is not counted: the model was young).
type heldPoint struct{ r, u float32 }

func newLongRun() *longRun {
	lr := &longRun{}
	lr.season.init()
	lr.cal.init()
	return lr
}

var longRunBytes = heapsize.Of(int(unsafe.Sizeof(longRun{})), true)

func (lr *longRun) memBytes() int {
	return longRunBytes + heapsize.Of(8*cap(lr.held), false)
}

// residual sets the context of a point with value v at t (unix ns) and
// returns its residual.
func (lr *longRun) residual(mode Seasonality, v float64, t int64, first bool) float64 {
	lr.value = v
	lr.pred, lr.predOK = lr.season.predict(t)
	use := uint8(lr.season.choose(mode, lr.predOK, lr.step))
	if first {
		lr.season.used, lr.base = use, v
		return 0
	}
	if use != lr.season.used {
		// The offset was from the other prediction.
		lr.season.off, lr.season.used = 0, use
	}
	p := lr.pred[use]
	lr.base = p + lr.season.off
	r, r0 := v-lr.base, v-p
	if math.Abs(r0) < math.Abs(r) {
		r = r0
	}
	// Within float32's range, as the window keeps it: beyond is as far as
	// it gets (and the forest's arithmetic stays finite).
	return float64(toFloat32(r))
}

// perWeek is the series' points per week, by its usual interval (5 minutes
// until it is known).
func (lr *longRun) perWeek() float64 {
	if lr.step > 0 {
		return 604800 / lr.step
	}
	return 2016
}

// calibrate turns a raw score into the verdict's score (see calibrate.go).
// The score's surprise is counted in the calibration when the point is
// learned (see count): an incident's points only when it ends, so that its
// first point does not make the next ones look ordinary, while bursts that
// keep coming do widen the tail.
func (lr *longRun) calibrate(raw float64, learned int) float64 {
	u := surprise(raw)
	p := min(lr.cal.tail(u), lr.cal.stretch(u))
	lr.u = -1
	if learned >= calStart {
		lr.u = u
		if p > 1e-3 {
			lr.cal.learn(u)
		}
	}
	return 1 / (1 + p*lr.perWeek())
}

// exitFloor returns the raw score below which the verdict of a point is
// taken from the forest's first eight trees (see judge), or 0: the score
// whose surprise has exitShare of the calibration's weight above it. A
// point below it has a tail probability of at least exitShare: by its own
// surprise it scores at most 1/(1 + exitShare x points per week) (the
// stretch's evidence, mostly the points before it, can add to that). The
// exit applies only where that is exitMargin times more common than a
// point at the threshold thr, and not while a stretch is under way (a
// stretch is made of moderately unusual points, whose surprise each
// counts).
func (lr *longRun) exitFloor(thr float64) float64 {
	if lr.cal.best < 1 || exitShare*lr.perWeek()*thr < exitMargin*(1-thr) {
		return 0
	}
	return 1 - math.Exp(-lr.cal.upper(exitShare))
}

// exitShare and exitMargin: see exitFloor. On NAB and the scenarios,
// shares of 0.5, 0.3 and 0.15 stop about 50%, 70% and 83% of the scores
// after eight trees; 0.3 kept the results of scoring over all trees on the
// default seed and two others, 0.15 lost 1.6 NAB standard on the default
// seed (see docs/benchmarks.md).
const (
	exitShare  = 0.3
	exitMargin = 100
)

// count counts a learned point's surprise u (-1: none) in the calibration.
func (lr *longRun) count(u float64) {
	if u >= 0 {
		lr.cal.add(u)
	}
}

// ratioFloorScale is the least level a utilisation's relative floor is
// taken of.
const ratioFloorScale = 0.5

// trivialFloor is the smallest residual that may flag. For a utilisation
// (ratio: values in [0, 1] that never exceeded aboveOneFrom) the relative part is of
// at least half its full scale, 1 percentage point by default: a CPU state
// at 0.4% moving to 0.5% is a large change of its level, and nothing anyone
// would be woken for.
func (lr *longRun) trivialFloor(rel, abs float64, ratio bool) float64 {
	scale := math.Abs(lr.season.level)
	if ratio && !lr.aboveOne {
		scale = max(scale, ratioFloorScale)
	}
	return max(rel*scale, 2*lr.quantum, abs)
}

// observed updates what the series knows of its values and times, after
// the point was judged.
func (lr *longRun) observed(v float64, t int64, learned int, frozen bool) {
	// The time context learns a value at most levelBound usual residuals
	// from what it predicted into its level and offset, and at most
	// slotBound into its half hours: one far-off point (a spike to 1e308)
	// must not become the level or a half hour's mean, while a job that
	// runs every night, however high, must become its half hours'.
	sv, lv := float64(toFloat32(v)), float64(toFloat32(v))
	if lr.spreadN >= farMinPoints && lr.spread > 0 {
		w := 1.25 * lr.spread
		sv = min(max(sv, lr.base-slotBound*w), lr.base+slotBound*w)
		lv = min(max(lv, lr.base-levelBound*w), lr.base+levelBound*w)
	}
	lr.season.learn(sv, lv, t, lr.pred, lr.predOK, frozen, lr.step)
	if d := math.Abs(v - lr.prev); d > 0 && learned > 0 && (lr.quantum == 0 || d < lr.quantum) {
		lr.quantum = d
	}
	lr.prev = v
	lr.negative = lr.negative || v < 0
	// Above 1 by more than a counter's hiccup: Linux's iowait can step
	// back, and a CPU state's utilisation then reads a little over 1.
	lr.aboveOne = lr.aboveOne || v > aboveOneFrom
	if t > lr.tlast && lr.tlast > 0 {
		dt := float64(t-lr.tlast) / 1e9
		if lr.step == 0 {
			lr.step = dt
		} else {
			lr.step += (dt - lr.step) / 16
		}
	}
	lr.tlast = max(lr.tlast, t)
}

// holding reports whether the point just judged, flagged or not, is to be
// held back: its series has an open incident that started holding at a
// flagged point and has not lasted newNormal (nanoseconds) yet.
func (lr *longRun) holding(open, flagged bool, t, newNormal int64) bool {
	if flagged {
		lr.run++
	} else {
		lr.run = 0
	}
	if !open {
		lr.accepted = false
		return false
	}
	if newNormal <= 0 || lr.accepted || (len(lr.held) == 0 && !flagged) {
		return false
	}
	// At a coarse interval the span is a few points, fewer than the model
	// takes to adapt to a new level by itself (offsetPoints): holding would
	// only flag every point of a burst. Only finer series hold.
	if len(lr.held) == 0 && lr.step > 0 && float64(newNormal)/1e9/lr.step < holdMinPoints {
		return false
	}
	if len(lr.held) == 0 {
		lr.heldSince, lr.heldDev = t, 0
	}
	if t-lr.heldSince >= newNormal || len(lr.held) >= maxHeld {
		// A new normal: the recent offset jumps to where the incident has
		// been, so that the level it stays at is judged as usual from now.
		lr.accepted = true
		if n := len(lr.held); n > 0 {
			lr.season.off = lr.heldDev / float64(n)
		}
		return false
	}
	// At float32's range, as the window keeps values: a run of 1e308s
	// must not make the sum, and the offset set from it, infinite (a NaN
	// level would follow, then a snapshot that cannot be restored).
	lr.heldDev += lr.departure()
	return true
}

// departure is the point being judged's departure from its prediction
// (without the offset), at float32's range.
func (lr *longRun) departure() float64 {
	return float64(toFloat32(lr.value - lr.pred[lr.season.used]))
}

// away reports whether the point being judged lies, from the level and
// offset the incident froze, on the side of the points held so far, at
// least half as far as their mean and awayFrom usual residuals out (of its
// half hour's: scale, see scaleFor): the change they started is still
// under way.
func (lr *longRun) away(scale float64) bool {
	n := len(lr.held)
	if n == 0 || lr.accepted {
		return false
	}
	off := lr.season.off
	m, d := lr.heldDev/float64(n)-off, lr.departure()-off
	return d*m > 0 && math.Abs(d) >= math.Abs(m)/2 && lr.farZ(d*scale) >= awayFrom
}

// awayFrom is how far out, in usual residuals, a point must be to keep an
// incident open by being away (see away): noise on the incident's side
// must not.
const awayFrom = 3

// holdMinPoints: see holding.
const holdMinPoints = 16

// maxHeld bounds the points held for one incident (at one point a second,
// 30 minutes are 1800).
const maxHeld = 4096

// rawThreshold is the raw score at which a point of this series would
// score thr (by its own score alone, without a stretch): what the expected
// band is found for.
func (lr *longRun) rawThreshold(thr float64) float64 {
	want := (1 - thr) / (thr * lr.perWeek())
	lo, hi := 0.0, 60.0 // in surprise; tail decreases with it
	if lr.cal.tail(lo) <= want {
		return 0
	}
	for range 50 {
		mid := (lo + hi) / 2
		if lr.cal.tail(mid) > want {
			lo = mid
		} else {
			hi = mid
		}
	}
	return 1 - math.Exp(-hi)
}

// far lifts score for a residual r far out in units of the series' usual
// residual: a few past outliers in the window must not make the next one
// look ordinary (the window's range, see beyond.go, takes them in).
func (lr *longRun) far(r, score float64) float64 {
	if !lr.farOut(r) {
		return score
	}
	z := lr.farZ(r)
	lift := (z - farFrom) / (z - farFrom + farScale)
	return score + (1-score)*lift
}

// farOut reports whether far lifts the score of r.
func (lr *longRun) farOut(r float64) bool {
	return lr.spread > 0 && lr.spreadN >= farLiftPoints && !(lr.farZ(r) <= farFrom)
}

// farZ is r in usual residuals: 1.25 mean absolute deviations are about
// one standard deviation.
func (lr *longRun) farZ(r float64) float64 { return math.Abs(r) / (1.25 * lr.spread) }

// A residual farther out than farFrom usual residuals (about standard
// deviations) is lifted by (z-farFrom)/(z-farFrom+farScale) of its score's
// distance to 1, once farLiftPoints residuals were learned.
const (
	levelBound   = 10.0
	slotBound    = 1000.0
	farFrom      = 4.0
	farScale     = 2.0
	farMinPoints = 64

	// aboveOneFrom is where a utilisation is taken to be in percent.
	aboveOneFrom = 1.1
)

// farLiftPoints is how many residuals the lift needs. Fewer than
// farMinPoints: a young series' forest cannot score a value far outside
// its few points much above the threshold (its trees are shallow), so
// without the lift a jump of a hundred usual residuals in its first
// minutes would barely flag.
const farLiftPoints = 32

// scaleFor returns the factor a residual at t is scaled by before the
// forest sees it, on a series whose window (window points at its usual
// step) spans less than a day: the series' usual residual over that of
// its half hour of the day, at most 1 and at least 1/4, once the half hour
// has slotMinPoints residuals of a cycle, and while a cycle is in use (a
// series whose cycle is gone is not judged by it). Busy hours are noisier than
// quiet ones on most traffic. A window shorter than a day holds the quiet
// night when the morning starts (2.8 hours at 10 s), and a busy hour's
// ordinary noise lay beyond it and 4-10 usual residuals out: a weekday
// queue at 10 s flagged every morning. A window of days holds busy and
// quiet hours alike and needs no scale. Only ever down: a quiet hour's
// noise is not magnified.
func (lr *longRun) scaleFor(t int64, window int) float64 {
	i := slotOf(t)
	if i < 0 || lr.season.used == predLevel || !(lr.step > 0) || float64(window)*lr.step >= 86400 ||
		lr.slotN[i] < slotMinPoints || !(lr.spread > 0) || !(lr.slotSpread[i] > 0) {
		return 1
	}
	return min(max(lr.spread/float64(lr.slotSpread[i]), minScale), 1)
}

// minScale and slotMinPoints: see scaleFor.
const (
	minScale      = 0.25
	slotMinPoints = 64
)

// slotOf is the half hour of the day of t (unix ns), or -1 before 1970.
func slotOf(t int64) int {
	if t < 0 {
		return -1
	}
	return int((t / 1e9 % 86400) / slotSecs)
}

// learnSlot folds a learned residual r (unscaled) at t into its half
// hour's usual residual: a running mean of its first slotMinPoints, then
// a moving mean over about a week of that half hour's points. Only while
// a cycle is in use: the level's residuals in a cycle's busy hours are the
// cycle itself.
func (lr *longRun) learnSlot(r float64, t int64) {
	i := slotOf(t)
	if i < 0 || lr.season.used == predLevel {
		return
	}
	a := math.Abs(r)
	if lr.spreadN >= farMinPoints {
		// One far-off residual (a spike to 1e308) must not be a half
		// hour's usual one: at most levelBound of the larger yardstick,
		// before the usual residual takes the point in (see judge).
		a = min(a, levelBound*1.25*max(lr.spread, float64(lr.slotSpread[i])))
	}
	n := float32(spanPoints(7*slotSecs, lr.step, slotMinPoints))
	if lr.slotN[i] < slotMinPoints {
		lr.slotN[i]++
		n = float32(lr.slotN[i])
	}
	lr.slotSpread[i] += (toFloat32(a) - lr.slotSpread[i]) / n
}

// learnSpread folds a learned residual into the usual residual, a moving
// mean over errSpan (season.go): in time, so that at one minute the busy
// hours' residuals are still in it the next morning.
func (lr *longRun) learnSpread(r float64) {
	a := math.Abs(r)
	if lr.spreadN < math.MaxInt32 {
		lr.spreadN++
	}
	lr.spread += (a - lr.spread) / float64(min(lr.spreadN, spanPoints(errSpan, lr.step, farMinPoints)))
}
