package detector

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// monday is 2025-03-03 00:00 UTC, a Monday.
var monday = time.Date(2025, 3, 3, 0, 0, 0, 0, time.UTC)

// feedAt observes v(t) for one series every step from start for n points and
// returns the verdicts.
func feedAt(d *Detector, key uint64, start time.Time, step time.Duration, n int, v func(t time.Time) float64) []Verdict {
	out := make([]Verdict, n)
	for i := range n {
		t := start.Add(time.Duration(i) * step)
		out[i] = d.Observe(Point{Key: key, Kind: Gauge, Time: t.UnixNano(), V0: v(t)}, t.UnixNano())
	}
	return out
}

// A CPU with a job every night from 02:00 to 02:30: the job is news on the
// first nights, not after two; the same job at noon is an anomaly.
func TestNightlyJobIsLearnedAndTheWrongTimeIsNot(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	job := func(t time.Time) bool { return t.Hour() == 2 && t.Minute() < 30 }
	const days = 12
	noonJob := monday.Add(10*24*time.Hour + 12*time.Hour)
	d := New(DefaultConfig(), 0)
	vs := feedAt(d, 1, monday, 5*time.Minute, days*288, func(t time.Time) float64 {
		if job(t) || (!t.Before(noonJob) && t.Before(noonJob.Add(30*time.Minute))) {
			return 85 + rng.NormFloat64()
		}
		return 30 + 3*rng.NormFloat64()
	})
	nightFlags := make([]int, days)
	for i, v := range vs {
		if t := monday.Add(time.Duration(i) * 5 * time.Minute); v.Anomaly && job(t) {
			nightFlags[t.YearDay()-monday.YearDay()]++
		}
	}
	for day := 3; day < days; day++ {
		assert.Zero(t, nightFlags[day], "night %d: the job has been seen on two nights already (flags by night %v)", day, nightFlags)
	}
	i := int(noonJob.Sub(monday) / (5 * time.Minute))
	assert.True(t, vs[i].Anomaly, "the job at noon (score %.3f)", vs[i].Score)
}

// A queue busy on weekday working hours and quiet at night and at weekends:
// a quiet weekend is normal, a Saturday with a weekday's load is not. At
// five minutes and at one: the cycle's errors and the usual residual are
// kept over days, not points, so that a Saturday morning is not judged by
// Friday's (at one minute, a span of points forgot the last weekend) and
// the busy hours' noise is not measured against the quiet night's.
func TestWeekdayLoadOnASaturdayIsFlagged(t *testing.T) {
	for _, step := range []time.Duration{5 * time.Minute, time.Minute} {
		t.Run(step.String(), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, 4))
			busy := func(t time.Time) bool {
				wd := t.Weekday() != time.Saturday && t.Weekday() != time.Sunday
				return wd && t.Hour() >= 9 && t.Hour() < 17
			}
			badSaturday := monday.Add(12*24*time.Hour + 9*time.Hour) // the second Saturday, 09:00
			d := New(DefaultConfig(), 0)
			n := int(16 * 24 * time.Hour / step)
			vs := feedAt(d, 1, monday, step, n, func(t time.Time) float64 {
				if busy(t) || (!t.Before(badSaturday) && t.Before(badSaturday.Add(time.Hour))) {
					return 250 + 20*rng.NormFloat64()
				}
				return 10 + 2*rng.NormFloat64()
			})
			falseAlarms := 0
			for i, v := range vs {
				t := monday.Add(time.Duration(i) * step)
				bad := !t.Before(badSaturday) && t.Before(badSaturday.Add(2*time.Hour))
				if v.Anomaly && !bad && t.After(monday.Add(8*24*time.Hour)) {
					falseAlarms++
				}
			}
			i := int(badSaturday.Sub(monday) / step)
			assert.True(t, vs[i].Anomaly, "a Saturday with a weekday's load (score %.3f)", vs[i].Score)
			assert.LessOrEqual(t, falseAlarms, 2, "normal days, quiet weekends included, from the second week on")
		})
	}
}

// The same queue at 10 s: its busy hours' noise is ten times the quiet
// night's, and the window (2.8 hours) holds the night when the morning
// starts. Judged in its half hour's usual residuals, the busy hours' noise
// is ordinary; a night with a day's load is not.
func TestBusyHoursNoiseIsOrdinaryAtTenSeconds(t *testing.T) {
	const step = 10 * time.Second
	rng := rand.New(rand.NewPCG(7, 8))
	surge := monday.Add(9*24*time.Hour + 3*time.Hour) // Wednesday of the second week, 03:00
	d := New(DefaultConfig(), 0)
	n := int(14 * 24 * time.Hour / step)
	vs := feedAt(d, 1, monday, step, n, func(t time.Time) float64 {
		wd := t.Weekday() != time.Saturday && t.Weekday() != time.Sunday
		if (wd && t.Hour() >= 8 && t.Hour() < 18) || (!t.Before(surge) && t.Before(surge.Add(30*time.Minute))) {
			return 245 + 20*rng.NormFloat64()
		}
		return max(0.5, 11.5+2.3*rng.NormFloat64())
	})
	episodes, last := 0, -100
	for i, v := range vs {
		t := monday.Add(time.Duration(i) * step)
		inSurge := !t.Before(surge) && t.Before(surge.Add(time.Hour))
		if v.Anomaly && !inSurge && t.After(monday.Add(8*24*time.Hour)) {
			if i-last > 6 {
				episodes++
			}
			last = i
		}
	}
	i := int(surge.Sub(monday) / step)
	assert.True(t, vs[i].Anomaly, "a night with a day's load (score %.3f)", vs[i].Score)
	t.Logf("%d false-alarm episodes", episodes)
	assert.LessOrEqual(t, episodes, 1, "false-alarm episodes in the second week")
}

// A series whose busy hours stop (the service moved away): judged by its
// level again, its half hours' residuals from the busy weeks do not damp
// a jump at a formerly busy hour.
func TestBusyHoursGoneDoNotHideAJump(t *testing.T) {
	const step = 10 * time.Second
	rng := rand.New(rand.NewPCG(9, 9))
	gone := monday.Add(14 * 24 * time.Hour)
	jump := monday.Add(21*24*time.Hour + 10*time.Hour) // a Monday, 10:00
	d := New(DefaultConfig(), 0)
	n := int(jump.Sub(monday)/step) + 1
	vs := feedAt(d, 1, monday, step, n, func(t time.Time) float64 {
		wd := t.Weekday() != time.Saturday && t.Weekday() != time.Sunday
		switch {
		case t.Equal(jump):
			return 11.5 + 20*2.3
		case t.Before(gone) && wd && t.Hour() >= 8 && t.Hour() < 18:
			return 245 + 20*rng.NormFloat64()
		}
		return max(0.5, 11.5+2.3*rng.NormFloat64())
	})
	v := vs[n-1]
	assert.True(t, v.Anomaly, "20 standard deviations at a formerly busy hour (score %.3f)", v.Score)
}

// Saturday evenings busy and Sunday evenings quiet, as a city's taxis: the
// two weekend days differ, and a prediction from weekend days alike would
// flag both every week. Each weekday is judged by itself once it has been
// seen twice, and the weekly prediction is taken up once it has predicted
// better than the daily one for a while.
func TestWeekendDaysKeepTheirOwnEvenings(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const step, weeks = 10 * time.Minute, 7
	d := New(DefaultConfig(), 0)
	vs := feedAt(d, 1, monday, step, weeks*7*144, func(t time.Time) float64 {
		v := 100 + 40*math.Sin(2*math.Pi*float64(t.Hour()*60+t.Minute())/1440) + 3*rng.NormFloat64()
		switch {
		case t.Hour() >= 20 && t.Weekday() == time.Saturday:
			v += 120
		case t.Hour() >= 20 && t.Weekday() == time.Sunday:
			v -= 50
		}
		return v
	})
	var byWeek [weeks]int
	for i, v := range vs {
		if v.Anomaly {
			byWeek[i/(7*144)]++
		}
	}
	// (Judged by weekend days alike, every week from the fourth had 6-8.)
	assert.Zero(t, byWeek[4]+byWeek[5]+byWeek[6], "flags in the last three weeks, by week: %v", byWeek)
}

// The predictions kept for a half hour are what reading the rows gives, at
// every point. A series that reports from 10:00 to 10:25 each day stores
// its 10:00 half hour's mean only at the next day's first point, after
// that point's predictions were made: the next point of the same half hour
// reads it. Also through a silence of three days.
func TestPredictionCacheIsNeverStale(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	d := New(DefaultConfig(), 0)
	var times []time.Time
	for day := range 40 {
		if day >= 20 && day < 23 {
			continue
		}
		for k := range 6 {
			times = append(times, monday.Add(time.Duration(day)*24*time.Hour+10*time.Hour+time.Duration(k)*5*time.Minute))
		}
	}
	checked := 0
	for i, at := range times[:len(times)-1] {
		v := 100 + 10*float64(at.Minute()/30) + 3*rng.NormFloat64()
		d.Observe(Point{Key: 1, Kind: Gauge, Time: at.UnixNano(), V0: v}, at.UnixNano())
		se := &d.shards[1].series[1].lr.season
		next := times[i+1].UnixNano()
		fresh := *se
		fresh.pslot = -1
		want, wantOK := fresh.predict(next)
		got, gotOK := se.predict(next)
		require.Equal(t, wantOK, gotOK, "point %d", i)
		require.Equal(t, want, got, "point %d", i)
		if gotOK[predDaily] {
			checked++
		}
	}
	require.Greater(t, checked, 150, "points with a daily prediction")
}

// Moves too small to matter never flag: a tiny quantised series that steps
// by one or two quanta, and a series at 100 that wanders by less than 2%.
func TestTrivialMovesDoNotFlag(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	d := New(DefaultConfig(), 0)
	const q = 0.00001 // a slab's share of memory, in steps of 10 kB
	vs := feedAt(d, 1, monday, 10*time.Second, 5000, func(time.Time) float64 {
		return 0.0029 + q*float64(rng.IntN(3)-1)
	})
	// A new value two quanta from anything seen.
	vs = append(vs, feedAt(d, 1, monday.Add(5000*10*time.Second), 10*time.Second, 1, func(time.Time) float64 { return 0.0029 - 2*q })...)
	for i, v := range vs {
		require.False(t, v.Anomaly, "quantised series, point %d (score %.3f)", i, v.Score)
	}

	flat := New(DefaultConfig(), 0)
	feedAt(flat, 2, monday, time.Minute, 3000, func(time.Time) float64 { return 100 + 0.1*rng.NormFloat64() })
	step := feedAt(flat, 2, monday.Add(3000*time.Minute), time.Minute, 1, func(time.Time) float64 { return 101.5 })
	assert.False(t, step[0].Anomaly, "a 1.5%% move of a series at 100 (score %.3f)", step[0].Score)
	spike := feedAt(flat, 2, monday.Add(3001*time.Minute), time.Minute, 1, func(time.Time) float64 { return 110 })
	assert.True(t, spike[0].Anomaly, "but a 10%% jump is not trivial (score %.3f)", spike[0].Score)
}

// A utilisation's move under a percentage point never flags, however
// large against its level: CPU wait at 0.4% reaching 0.9%. The same values
// of a metric that is not a utilisation do flag, and so does a utilisation's
// move of five points.
func TestTinyUtilisationMovesDoNotFlag(t *testing.T) {
	run := func(ratio bool, to float64) Verdict {
		rng := rand.New(rand.NewPCG(7, 8))
		d := New(DefaultConfig(), 0)
		var v Verdict
		for i := range 2001 {
			ts := monday.Add(time.Duration(i) * 10 * time.Second).UnixNano()
			x := 0.004 + 0.0003*rng.NormFloat64()
			if i == 2000 {
				x = to
			}
			v = d.Observe(Point{Key: 1, Kind: Gauge, Time: ts, V0: x, Ratio: ratio}, ts)
		}
		return v
	}
	v := run(true, 0.009)
	assert.False(t, v.Anomaly, "utilisation 0.4%% -> 0.9%% (score %.3f)", v.Score)
	v = run(false, 0.009)
	assert.True(t, v.Anomaly, "the same move of a metric that is not a utilisation (score %.3f)", v.Score)
	v = run(true, 0.054)
	assert.True(t, v.Anomaly, "utilisation 0.4%% -> 5.4%% (score %.3f)", v.Score)
}

// A series just past its warm-up (a collector started minutes ago) that
// jumps tenfold flags at once: memory utilisation 2% -> 25% at the 34th
// scrape. Its forest alone, built on a few points, scores that jump under the
// threshold; the lift for values far outside the usual residual carries it.
func TestJumpRightAfterWarmupFlags(t *testing.T) {
	for _, at := range []int{34, 40, 60} {
		rng := rand.New(rand.NewPCG(1, uint64(at)))
		d := New(DefaultConfig(), 0)
		for i := range at + 1 {
			ts := monday.Add(time.Duration(i) * 5 * time.Second).UnixNano()
			x := 0.02 + 0.0006*rng.Float64()
			if i == at {
				x = 0.25
			}
			v := d.Observe(Point{Key: 1, Kind: Gauge, Time: ts, V0: x, Ratio: true}, ts)
			if i < at {
				require.False(t, v.Anomaly, "point %d of the steady start flagged (score %.3f)", i, v.Score)
			} else {
				assert.True(t, v.Anomaly, "jump at point %d: score %.3f", at, v.Score)
			}
		}
	}
}

// Every flagged point of a one-input series has an expected band; a series
// that was never negative gets none below 0, a utilisation none above 1
// (even when a counter's hiccup made it read 1.02 now and then).
func TestExpectedBandIsAlwaysThereAndBounded(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	d := New(DefaultConfig(), 0)
	n := 0
	for i := range 3000 {
		ts := monday.Add(time.Duration(i) * 5 * time.Second)
		v := 0.97 + 0.01*rng.NormFloat64()
		if i%500 == 499 {
			v = 0.2 // a core goes idle-less, or a spike down
		}
		v = min(1, max(0, v))
		if i%97 == 50 {
			v = 1.02 // Linux's iowait stepped back: idle reads a little over 1
		}
		vd := d.Observe(Point{Key: 1, Kind: Gauge, Time: ts.UnixNano(), V0: v, Ratio: true}, ts.UnixNano())
		if !vd.Anomaly {
			continue
		}
		n++
		require.True(t, vd.HasExpected, "flagged point %d has a band", i)
		assert.GreaterOrEqual(t, vd.ExpectedMin, 0.0, "point %d", i)
		assert.LessOrEqual(t, vd.ExpectedMax, 1.0, "point %d: a utilisation's band stays within [0, 1]", i)
		assert.True(t, vd.ExpectedMin <= 0.97 && 0.97 <= vd.ExpectedMax, "point %d: band [%g, %g] holds the usual level", i, vd.ExpectedMin, vd.ExpectedMax)
	}
	assert.Positive(t, n, "the drops are flagged")
}

// A step from 0.98 to 0.50 held for 20 minutes on a 5 s series is flagged at
// its first point and stays flagged, one incident, for at least 10 minutes
// (new_normal_after is 30 minutes): its own first points do not become the
// normal it is judged by.
func TestSustainedAnomalyStaysOne(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	d := New(DefaultConfig(), 0)
	const step = 5 * time.Second
	start := 6 * 720 // six hours of 5 s points
	vs := feedAt(d, 1, monday, step, start+240+360, func(t time.Time) float64 {
		i := int(t.Sub(monday) / step)
		if i >= start && i < start+240 {
			return 0.50 + 0.01*rng.NormFloat64()
		}
		return min(1, 0.98+0.004*rng.NormFloat64())
	})
	require.True(t, vs[start].Anomaly, "the step's first point")
	require.Equal(t, Started, vs[start].Incident)
	id := vs[start].IncidentID
	for i := start; i < start+120; i++ { // 10 minutes
		require.True(t, vs[i].Anomaly, "point %d of the step (score %.3f)", i-start, vs[i].Score)
		require.Equal(t, id, vs[i].IncidentID, "one incident")
	}
	ended := false
	for _, v := range vs[start+240:] {
		ended = ended || v.Incident == Ended
	}
	assert.True(t, ended, "the incident ends after the step")
}

// A level shift of eight standard deviations at one minute: its held
// points' scores waver about the threshold (at one point a minute the bar
// is five times higher than at five), and five of them in a row below it
// must not close the incident while the series stays where it went. One
// incident, open until new_normal_after has passed, then accepted.
func TestLevelShiftStaysOneIncident(t *testing.T) {
	for seed := uint64(1); seed <= 10; seed++ {
		rng := rand.New(rand.NewPCG(seed, seed))
		const shift = 3499 // the point the level moves at
		i := 0
		vs := feedAt(New(DefaultConfig(), 0), 1, monday, time.Minute, shift+120, func(time.Time) float64 {
			i++
			v := 100 + 3*rng.NormFloat64()
			switch {
			case i%700 == 0:
				v += 40 // a spike now and then, and a ramp: the
			case i >= 3000 && i < 3200: // calibration has seen some
				v += float64(i-3000) / 10
			case i > shift:
				v += 25
			}
			return v
		})
		started, ended := -1, -1
		for i := shift; i < len(vs); i++ {
			switch vs[i].Incident {
			case Started:
				require.Equal(t, -1, started, "seed %d: a second incident at point %d of the shift", seed, i-shift)
				started = i
			case Ended:
				ended = i
			}
		}
		require.GreaterOrEqual(t, started, shift, "seed %d: the shift opens an incident", seed)
		require.Greater(t, ended, started, "seed %d: and it ends, a new normal", seed)
		assert.Less(t, started-shift, 5, "seed %d: at once", seed)
		assert.GreaterOrEqual(t, ended-started, 30, "seed %d: open for new_normal_after (30 minutes)", seed)
	}
}

// With new_normal_after, a level that stays is accepted: the incident ends
// after about that long, and the model learns the new level.
func TestNewLevelBecomesNormal(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Incidents.NewNormalAfter = int64(10 * time.Minute)
	rng := rand.New(rand.NewPCG(11, 12))
	d := New(cfg, 0)
	const step = 5 * time.Second
	start := 3 * 720
	vs := feedAt(d, 1, monday, step, start+720, func(t time.Time) float64 {
		if int(t.Sub(monday)/step) >= start {
			return 0.50 + 0.01*rng.NormFloat64()
		}
		return 0.98 + 0.004*rng.NormFloat64()
	})
	require.True(t, vs[start].Anomaly)
	last := 0
	for i, v := range vs[start:] {
		if v.Anomaly {
			last = i
		}
	}
	assert.Less(t, last, 240, "flags stop within 20 minutes of a 10-minute new_normal_after (last flag at point %d)", last)
	assert.GreaterOrEqual(t, last, 100, "but not before it has lasted about that long (last flag at point %d)", last)
}

// The score is calibrated: on a noisy series with nothing wrong, flags at
// the default threshold (about one point a month expected at 0.8) are rare
// at any interval. A rate this low is measured over many series: one
// series' count of one or two flags says little.
func TestCalibratedFlagsAreRareOnNoise(t *testing.T) {
	const series = 20
	for _, step := range []time.Duration{10 * time.Second, 5 * time.Minute} {
		rng := rand.New(rand.NewPCG(13, 14))
		d := New(DefaultConfig(), 0)
		n := int(14 * 24 * time.Hour / step) // two weeks
		if n > 40000 {
			n = 40000
		}
		flags := 0
		for k := range uint64(series) {
			for _, v := range feedAt(d, k+1, monday, step, n, func(time.Time) float64 { return 50 + 5*rng.NormFloat64() }) {
				if v.Anomaly {
					flags++
				}
			}
		}
		weeks := series * float64(n) * step.Seconds() / 604800
		assert.LessOrEqual(t, float64(flags)/weeks, 2.0, "step %v: %d flags in %.1f series-weeks", step, flags, weeks)
		t.Logf("step %v: %d flags in %.1f series-weeks", step, flags, weeks)
	}
}

// A slow leak: a ramp that no single point makes stand out is flagged while
// it lasts (the stretch's evidence, see calibrate.go).
func TestSlowLeakIsFlagged(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	d := New(DefaultConfig(), 0)
	const step = 10 * time.Second
	start := 6 * 360 // six hours
	walk := 0.40
	vs := feedAt(d, 1, monday, step, start+720, func(t time.Time) float64 {
		walk += 0.0003*rng.NormFloat64() + (0.40-walk)/500
		if i := int(t.Sub(monday) / step); i >= start {
			return walk + 0.2*float64(i-start)/720 // +0.2 over two hours
		}
		return walk
	})
	falseAlarms, caught := 0, -1
	for i, v := range vs {
		switch {
		case i >= start && v.Anomaly && caught < 0:
			caught = i - start
		case i < start && i > 720 && v.Anomaly:
			falseAlarms++
		}
	}
	assert.GreaterOrEqual(t, caught, 0, "the leak is flagged while it lasts")
	assert.LessOrEqual(t, falseAlarms, 1)
	t.Logf("leak flagged after %d points; %d false alarms before it", caught, falseAlarms)
}

func TestSeasonality(t *testing.T) {
	for _, name := range seasonalityNames {
		s, ok := ParseSeasonality(name)
		require.True(t, ok)
		assert.Equal(t, name, s.String())
	}
	_, ok := ParseSeasonality("hourly")
	assert.False(t, ok)
	assert.True(t, weekend(int64(monday.Add(5*24*time.Hour).Unix()/86400)), "Saturday")
	assert.False(t, weekend(int64(monday.Unix()/86400)), "Monday")

	// With seasonality none, a nightly job is judged by the level alone:
	// it stays news every night.
	cfg := DefaultConfig()
	cfg.Seasonality = SeasonalityNone
	d := New(cfg, 0)
	rng := rand.New(rand.NewPCG(17, 18))
	vs := feedAt(d, 1, monday, 5*time.Minute, 10*288, func(t time.Time) float64 {
		if t.Hour() == 2 && t.Minute() < 30 {
			return 85 + rng.NormFloat64()
		}
		return 30 + 3*rng.NormFloat64()
	})
	night9 := int(monday.Add(9*24*time.Hour+2*time.Hour).Sub(monday) / (5 * time.Minute))
	assert.Equal(t, predLevel, int(d.shards[1].series[1].lr.season.used))
	_ = vs[night9]
}

// The calibrator's tail follows the scores it saw, and one extreme does not
// make the next look ordinary.
func TestCalibratorTail(t *testing.T) {
	var c calibrator
	c.init()
	assert.InDelta(t, 1, c.tail(0), 1e-6)
	prev := 1.0
	for u := 0.0; u < 12; u += 0.25 {
		p := c.tail(u)
		require.LessOrEqual(t, p, prev, "tail decreases at %g", u)
		require.False(t, math.IsNaN(p))
		prev = p
	}
	assert.Less(t, c.tail(2.2), 1e-5, "a score at the forest's ceiling is rare for a new series")
	rng := rand.New(rand.NewPCG(1, 1))
	for range 5000 {
		c.add(0.6 + 0.15*rng.NormFloat64())
	}
	before := c.tail(3)
	c.add(20)
	assert.Less(t, c.tail(3), 20*before, "one extreme counts as just beyond the tail")
	assert.Equal(t, c.tail(math.NaN()), c.tail(math.Inf(1)), "NaN is never an index")
}

// add skips the fit for a surprise tail has just found in the body: what it
// counts is what it would count with the fit, to the bit, whatever the
// scores (bursts, extremes, a stale finding after other calls).
func TestCalibratorSkipsFitOnlyWhereItCannotCap(t *testing.T) {
	var judged, plain calibrator
	judged.init()
	plain.init()
	rng := rand.New(rand.NewPCG(3, 4))
	skipped := 0
	for i := range 200000 {
		var u float64
		switch r := rng.Float64(); {
		case r < 0.9:
			u = max(0, 0.6+0.15*rng.NormFloat64())
		case r < 0.99:
			u = 6 * rng.Float64()
		default:
			u = 40 * rng.Float64() // beyond calMax
		}
		if i%7 != 0 { // judged first, as a point is; else counted cold
			judged.tail(u)
		}
		if i%11 == 0 {
			judged.tail(rng.Float64()) // another point's, found in the body
		}
		if u == judged.body {
			skipped++
		}
		judged.add(u)
		plain.body = -1
		plain.add(u)
		if i%1000 == 0 {
			require.Equal(t, plain.bins, judged.bins, "point %d", i)
		}
	}
	assert.Equal(t, plain.bins, judged.bins)
	assert.Equal(t, plain.over, judged.over)
	assert.Equal(t, plain.total, judged.total)
	assert.Greater(t, skipped, 100000, "most points skip the fit")
}

// Values at float64's limits among ordinary ones keep every verdict finite
// and never hang a call (the band's search once looped on a NaN residual).
func TestHostileValuesKeepTheModelFinite(t *testing.T) {
	hostile := []float64{1e308, -1e308, math.MaxFloat64, -math.MaxFloat64, 4.9e-324, 0, 1e-300}
	d := New(DefaultConfig(), 0)
	rng := rand.New(rand.NewPCG(19, 20))
	for i := range 1500 {
		v := 35 + 5*rng.NormFloat64()
		if i%3 == 1 && i < 900 {
			v = hostile[(i/3)%len(hostile)]
		}
		done := make(chan Verdict, 1)
		go func() { done <- d.Observe(gaugeAt(1, i, v), 0) }()
		var vd Verdict
		select {
		case vd = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("Observe of point %d (%g) did not return", i, v)
		}
		require.False(t, math.IsNaN(vd.Score) || vd.Score < 0 || vd.Score > 1, "point %d: score %v", i, vd.Score)
		if vd.HasExpected {
			require.False(t, math.IsNaN(vd.ExpectedMin) || math.IsNaN(vd.ExpectedMax), "point %d: band", i)
		}
	}
}

// At a coarse interval new_normal_after is a handful of points, fewer than
// the model takes to adapt by itself: a step there stays flagged for the
// span without holding its points back (see holding).
func TestSustainedAnomalyAtACoarseInterval(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	d := New(DefaultConfig(), 0)
	const step = 5 * time.Minute
	start := 4 * 288 // four days
	vs := feedAt(d, 1, monday, step, start+24, func(t time.Time) float64 {
		if int(t.Sub(monday)/step) >= start {
			return 0.50 + 0.01*rng.NormFloat64()
		}
		return min(1, 0.98+0.004*rng.NormFloat64())
	})
	for i := start; i < start+6; i++ { // 30 minutes
		require.True(t, vs[i].Anomaly, "point %d of the step (score %.3f)", i-start, vs[i].Score)
	}
	assert.Empty(t, d.shards[1].series[1].lr.held, "nothing is held at this interval")
}

// The long-run state is in every one-input series: it stays within the
// allocator's 2688-byte size class (the next is 3072; 2304 before the half
// hours' usual residuals, 240 bytes), and its small fields sit together at
// its end, where they need no padding between them.
func TestLongRunSize(t *testing.T) {
	assert.LessOrEqual(t, longRunBytes, 2688)
	var lr longRun
	small := unsafe.Sizeof(lr.run) + unsafe.Sizeof(lr.spreadN) + unsafe.Sizeof(lr.accepted) +
		unsafe.Sizeof(lr.negative) + unsafe.Sizeof(lr.aboveOne) + unsafe.Sizeof(lr.predOK)
	assert.LessOrEqual(t, unsafe.Sizeof(lr)-unsafe.Offsetof(lr.run), (small+7)&^7, "the small fields' tail")
}

// At a coarse interval an incident holds no points (too few fit in
// new_normal_after), but the level and the offset still wait: for
// new_normal_after from the incident's start, not for as long as it stays
// open, or a long incident would keep judging its series against the old
// level after it has become the new one.
func TestCoarseIncidentFreezesTheOffsetForNewNormalOnly(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 12))
	d := New(DefaultConfig(), 0)
	newNormal := time.Duration(d.cfg.Incidents.NewNormalAfter)
	const step = 5 * time.Minute
	start := 10 * 288
	feedAt(d, 1, monday, step, start, func(time.Time) float64 { return 50 + 2*rng.NormFloat64() })
	s := d.shards[1%uint64(len(d.shards))].series[1]
	frozenChecked, followed := 0, false
	for i := range 2 * 288 {
		tm := monday.Add(time.Duration(start+i) * step)
		before := s.lr.season.off
		// A new level, much noisier than the old: its flags keep the
		// incident open for hours.
		x := 90 + 15*rng.NormFloat64()
		if i == 0 {
			x = 100 // the step's first point is beyond doubt
		}
		v := d.Observe(Point{Key: 1, Kind: Gauge, Time: tm.UnixNano(), V0: x}, tm.UnixNano())
		if i == 0 {
			require.Equal(t, Started, v.Incident, "the step's first point opens an incident")
		}
		if !s.inc.open {
			break
		}
		if age := tm.Sub(time.Unix(0, s.inc.start)); age < newNormal {
			require.Equal(t, before, s.lr.season.off, "offset moved %v into the incident", age)
			frozenChecked++
		} else if s.lr.season.off != before {
			followed = true
			break
		}
	}
	require.Equal(t, int(newNormal/step), frozenChecked, "the incident lasts beyond new_normal_after")
	assert.True(t, followed, "the offset follows the new level once the incident is older than new_normal_after")
}
