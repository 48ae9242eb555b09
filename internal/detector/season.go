package detector

import (
	"math"
	"slices"
)

// Time context of one-input series.
//
// A value is judged against what is usual for its time and its recent
// level. Each one-input series keeps the mean of every half hour of its
// last fifteen days, on the datapoints' own timestamps (UTC), and predicts
// the next value three ways:
//
//   - level: its long-run level (a moving average over about a thousand
//     points), for series without a cycle;
//   - daily: the median of the same half hour on the three days before (one
//     odd day does not move a median; a new daily habit, such as a job that
//     runs every night, is learned after two nights);
//   - weekly: the same half hour on the same weekday one and two weeks
//     before, with the median of the last three days of the same kind
//     (weekdays or weekends) as the third value of a median: a busy weekday
//     morning is not expected on a Saturday, a Saturday night is not a
//     Sunday night, and one odd Saturday does not echo on the next. Until
//     a weekday has been seen twice, the kind's median alone. Weekdays
//     differ at the ends of a week (a Monday after a weekend, and, in UTC,
//     evenings elsewhere fall on the next day), which the same weekday
//     learns wherever the series' users live.
//
// It keeps how far off each prediction has been (mean absolute error) and
// judges by the best one, and by a cycle only when it has predicted clearly
// better than no cycle: that is how cycles are detected per series
// (seasonality: auto). The value's departure from the prediction, less a
// recent offset that follows level changes within a few dozen points, is
// the input the series' forest sees (see longrun.go).

const (
	daySlots = 48 // half hours
	slotSecs = 86400 / daySlots
	// The days kept, a ring: day dn is in row dn % keepDays. The day being
	// filled and the two weeks before it, the oldest day a prediction reads.
	keepDays = 15
	// levelPoints is the span of the long-run level's moving average, and
	// offsetPoints that of the offset from the prediction: the recent level a
	// jump or a shift is measured against. On NAB, 64 scored best among 16
	// to 1024.
	levelPoints  = 1024
	offsetPoints = 64
	// A cycle is taken up when its prediction has been off by less than
	// cycleBetter times the level's (or the daily cycle's, for the weekly),
	// over at least cycleMinSpan's points at the series' usual interval,
	// and kept while it is off by less than cycleKeep times: no
	// flip-flopping at the margin. The errors are averaged over errSpan.
	// Both are times (seconds), not points: counted in points, a series at
	// 1 minute forgot last weekend's errors by Saturday morning and judged
	// it by Friday's. 288 and 1,024 points at five minutes, where they
	// were tuned; never fewer than cycleMinPoints (at an hour or coarser).
	cycleBetter    = 0.7
	cycleKeep      = 0.8
	cycleMinSpan   = 86400
	errSpan        = 1024 * 300
	cycleMinPoints = 24
)

// spanPoints is how many points at step seconds apart (0: not known yet,
// taken as five minutes) span secs, and at least least.
func spanPoints(secs, step float64, least int32) int32 {
	if step <= 0 {
		step = 300
	}
	return max(int32(min(secs/step, math.MaxInt32/2)), least)
}

// Seasonality says which predictions a series may be judged by.
type Seasonality uint8

const (
	SeasonalityAuto   Seasonality = iota // the best of level, daily and weekly
	SeasonalityNone                      // the level only
	SeasonalityDaily                     // daily once it is known, else the level
	SeasonalityWeekly                    // weekly once it is known, else the level
)

// Seasonality values as written in configuration.
var seasonalityNames = [...]string{"auto", "none", "daily", "weekly"}

func (s Seasonality) String() string {
	if int(s) < len(seasonalityNames) {
		return seasonalityNames[s]
	}
	return "unknown"
}

// ParseSeasonality reads a Seasonality from its configuration name.
func ParseSeasonality(name string) (Seasonality, bool) {
	i := slices.Index(seasonalityNames[:], name)
	return Seasonality(max(i, 0)), i >= 0
}

// Predictions.
const (
	predLevel = iota
	predDaily
	predWeekly
	numPred
)

type season struct {
	day [keepDays]dayRow

	// The half hour being filled.
	slot int64 // unix half hours; -1 none yet
	sum  float64
	n    int32

	level float64 // long-run level
	off   float64 // recent offset from the prediction in use
	err   [numPred]float32
	errN  [numPred]int32

	// The daily and weekly predictions of half hour pslot (-1: none): the
	// same for every point of a half hour until a mean is stored, and
	// reading the rows they come from is most of a point's misses in the
	// caches once a collector holds many series.
	pslot int64
	pp    [numPred]float64
	pok   [numPred]bool

	used uint8 // the prediction judged by at the last point
}

func (s *season) init() {
	s.slot, s.pslot = -1, -1
	for i := range s.day {
		s.day[i].clear(-1)
	}
}

// dayRow is a day's half-hour means, kept as half floats (half.go): each
// the offset from the day's first mean, scaled by a power of two the row
// shares. A day's means differ from each other by its cycle, so the
// precision is of the cycle, 1/2048 of the largest offset: half the memory
// of float32 means, and the level (a value of 1e6 moving by 10 a day) is
// kept in full in base.
type dayRow struct {
	v    [daySlots]uint16 // noHalf: no data
	base float32          // the first mean written
	no   int32            // the unix day the row holds; -1 none
	exp  int8             // v are halves times 2^exp
	used bool             // base is set
}

// noHalf marks a half hour without data: a NaN, which toHalf never returns.
const noHalf = 0x7e00

func (r *dayRow) clear(dn int32) {
	*r = dayRow{no: dn}
	for i := range r.v {
		r.v[i] = noHalf
	}
}

// get returns the mean of half hour i, if there was data.
func (r *dayRow) get(i int64) (float64, bool) {
	h := r.v[i]
	if h == noHalf {
		return 0, false
	}
	return float64(r.base) + float64(fromHalf(h))*float64(pow2(int(r.exp))), true
}

// set stores m as the mean of half hour i. The row's scale takes in a
// larger offset first, rounding the others again.
func (r *dayRow) set(i int64, m float32) {
	if !r.used {
		r.base, r.used = m, true
	}
	off := float64(m) - float64(r.base)
	big := math.Abs(off)
	for _, h := range r.v {
		if h != noHalf {
			big = max(big, float64(abs32(fromHalf(h)))*float64(pow2(int(r.exp))))
		}
	}
	if e := int8(expFor(toFloat32(big))); e != r.exp {
		old := pow2(int(r.exp))
		r.exp = e
		for k, h := range r.v {
			if h != noHalf {
				r.v[k] = toHalf(fromHalf(h) * old * pow2(-int(e)))
			}
		}
	}
	r.v[i] = toHalf(toFloat32(off * float64(pow2(-int(r.exp)))))
}

// weekend reports whether unix day dn is a Saturday or Sunday (UTC).
func weekend(dn int64) bool {
	return (dn+3)%7 >= 5 // 1970-01-01 was a Thursday; Monday is 0
}

// predict returns the predictions for a point at t (unix ns); ok[i] is
// false where one lacks the history.
func (s *season) predict(t int64) (p [numPred]float64, ok [numPred]bool) {
	p[predLevel], ok[predLevel] = s.level, true
	sec := t / 1e9
	if sec < 0 {
		return p, ok // before 1970: no calendar
	}
	if sec/slotSecs == s.pslot {
		p, ok = s.pp, s.pok
		p[predLevel], ok[predLevel] = s.level, true
		return p, ok
	}
	defer func() { s.pslot, s.pp, s.pok = sec/slotSecs, p, ok }()
	dn := sec / 86400
	slot := (sec % 86400) / slotSecs
	we := weekend(dn)
	day := func(d int64) (float64, bool) {
		if d < 0 || int64(s.day[d%keepDays].no) != d {
			return 0, false
		}
		return s.day[d%keepDays].get(slot)
	}
	var daily [3]float64
	nd := 0
	for d := dn - 1; d >= dn-3; d-- {
		if v, has := day(d); has {
			daily[nd] = v
			nd++
		}
	}
	if nd >= 2 {
		p[predDaily], ok[predDaily] = median(daily[:nd]), true
	}
	// The newest three days of its kind, and the same weekday.
	var kind [3]float64
	nk := 0
	for d := dn - 1; d > dn-keepDays && nk < len(kind); d-- {
		if weekend(d) != we {
			continue
		}
		if v, has := day(d); has {
			kind[nk] = v
			nk++
		}
	}
	// Until there are two days of its kind, a weekend day takes the one.
	if nk < 2 && !(nk == 1 && we) {
		return p, ok
	}
	w := median(kind[:nk])
	if a, has := day(dn - 7); has {
		if b, has := day(dn - 14); has {
			v := [3]float64{a, b, w}
			w = median(v[:])
		}
	}
	p[predWeekly], ok[predWeekly] = w, true
	return p, ok
}

func median(v []float64) float64 {
	switch len(v) {
	case 1:
		return v[0]
	case 2:
		return (v[0] + v[1]) / 2
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// choose returns the prediction to judge by under mode.
func (s *season) choose(mode Seasonality, ok [numPred]bool, step float64) int {
	// The prediction in use keeps the lower bar: a step that shrinks (a
	// series scraped more often) must not drop a cycle it has learned.
	least := spanPoints(cycleMinSpan, step, cycleMinPoints)
	known := func(i int) bool {
		return ok[i] && (s.errN[i] >= least || int(s.used) == i && s.errN[i] >= cycleMinPoints)
	}
	switch mode {
	case SeasonalityNone:
		return predLevel
	case SeasonalityDaily:
		if known(predDaily) {
			return predDaily
		}
		return predLevel
	case SeasonalityWeekly:
		if known(predWeekly) {
			return predWeekly
		}
		return predLevel
	}
	better := func(i, than int) bool {
		f := cycleBetter
		if int(s.used) == i {
			f = cycleKeep
		}
		return known(i) && s.err[i] < float32(f)*s.err[than]
	}
	use := predLevel
	if better(predDaily, predLevel) {
		use = predDaily
	}
	if better(predWeekly, use) {
		use = predWeekly
	}
	return use
}

// learn takes in x (lx for the level and offset) at t (unix ns), judged
// with predictions p. With frozen (an incident younger than
// new_normal_after, or one still holding points: see judge) the level and
// the offset stay where they were, so that a sustained anomaly is measured
// against the level before it; the half hours still learn it.
func (s *season) learn(x, lx float64, t int64, p [numPred]float64, ok [numPred]bool, frozen bool, step float64) {
	rate := 1 / float32(spanPoints(errSpan, step, cycleMinPoints))
	for i := range numPred {
		if !ok[i] {
			continue
		}
		e := toFloat32(math.Abs(x - p[i]))
		if s.errN[i] == 0 {
			s.err[i] = e
		} else {
			s.err[i] += max(1/float32(s.errN[i]+1), rate) * (e - s.err[i])
		}
		if s.errN[i] < math.MaxInt32 {
			s.errN[i]++
		}
	}
	switch {
	case s.errN[predLevel] <= 1:
		s.level, s.off = lx, 0
	case !frozen:
		s.level += (lx - s.level) / levelPoints
		s.off += (lx - p[s.used] - s.off) / offsetPoints
	}
	if t < 0 {
		return
	}
	if slot := t / 1e9 / slotSecs; slot != s.slot {
		s.close()
		s.slot, s.sum, s.n = slot, 0, 0
	}
	s.sum += x
	s.n++
}

// close stores the mean of the half hour being filled.
func (s *season) close() {
	if s.slot < 0 || s.n == 0 {
		return
	}
	s.pslot = -1 // the rows change
	dn := s.slot / daySlots
	r := &s.day[dn%keepDays]
	if int64(r.no) != dn {
		r.clear(int32(dn))
	}
	r.set(s.slot%daySlots, toFloat32(s.sum/float64(s.n)))
}
