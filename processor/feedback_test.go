package iforestprocessor

import (
	"fmt"
	"math"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/otel-iforest/iforest/internal/detector"
	"github.com/otel-iforest/iforest/internal/rules"
	"github.com/otel-iforest/iforest/internal/verdict"
)

// The feedback scenario: an identical excursion every 400 points, the 7th
// twice as large.
const (
	fbRows, fbFirst, fbPeriod, fbLarge = 3200, 200, 400, 6
)

func feedbackScenario() ([]float64, []int) {
	return excursions(fbRows, fbFirst, fbPeriod, map[int]float64{fbLarge: 2}, 1)
}

func feedbackFile(ids ...uint64) string {
	s := "feedback:\n"
	for _, id := range ids {
		s += fmt.Sprintf("  - {incident_id: %s, verdict: normal}\n", verdict.FormatID(id))
	}
	return s
}

// checkAfterFeedback: from excursion k on, the identical excursions raise
// no incident and no flag, the large one does.
func checkAfterFeedback(t *testing.T, rows []rowVerdict, starts []int, k int) {
	t.Helper()
	for e := k; e < len(starts); e++ {
		s := starts[e]
		got := incidentsStarted(rows[s : s+20])
		if e == fbLarge {
			assert.Len(t, got, 1, "the excursion twice as large at row %d raises an incident", s)
			assert.Positive(t, flaggedIn(rows, s, s+5), "and is flagged")
			continue
		}
		assert.Empty(t, got, "the identical excursion at row %d raises no incident", s)
		assert.Zero(t, flaggedIn(rows, s, s+20), "the identical excursion at row %d is not flagged", s)
		for _, v := range rows[s : s+20] {
			assert.False(t, v.hasIncidentAttrs, "no incident attributes at the excursion of row %d", s)
		}
	}
}

// Without feedback every excursion up to the large one raises an
// incident: the premise. The one after it is left out: a model that has
// seen seven such excursions, the last one larger, within a window may take
// the next as normal, or not, by the forest's seed (it alarms at 3 of seeds
// 1-8), as recurring events become normal.
func TestExcursionsAlarmWithoutFeedback(t *testing.T) {
	vals, starts := feedbackScenario()
	r := runValues(t, createDefaultConfig().(*Config), vals)
	for _, s := range starts[:fbLarge+1] {
		assert.Len(t, incidentsStarted(r.rows[s:s+20]), 1, "excursion at row %d", s)
	}
}

// Feedback written into the rules file while data flows: after "incident
// X was normal" the identical excursions raise nothing; feedback removed
// from the file is withdrawn. (The larger excursion under feedback:
// TestFeedbackPendingUntilIncident.)
func TestFeedbackFromRulesFile(t *testing.T) {
	vals, starts := feedbackScenario()
	file := filepath.Join(t.TempDir(), "rules.yaml")
	writeRules(t, file, "")
	cfg := createDefaultConfig().(*Config)
	cfg.Operator.RulesFile = file
	r, err := startOps(t, cfg, nil, nil)
	require.NoError(t, err)
	defer r.shutdown(t)

	r.feed(t, vals, 0, starts[1]-20)
	ids := incidentsStarted(r.rows)
	require.Len(t, ids, 1)
	writeRules(t, file, feedbackFile(ids[0]))
	require.Eventually(t, func() bool { return r.logs.FilterMessage("feedback updated").Len() == 1 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, []any{verdict.FormatID(ids[0])}, r.logs.FilterMessage("feedback updated").All()[0].ContextMap()["applied"])

	const next = fbLarge - 1 // the last identical excursion before the large one
	end := starts[next] - 20
	r.feed(t, vals, starts[1]-20, end)
	checkAfterFeedback(t, r.rows, starts[:next], 1)
	set := attribute.NewSet(attribute.String("reason", "feedback"))
	assert.GreaterOrEqual(t, telemetrySum(t, r.tt, "otelcol_processor_iforest_anomalies_suppressed", &set), int64((next-1)*5), "%d excursions of 5 points", next-1)

	// Withdrawn: the next identical excursion alarms again.
	writeRules(t, file, "feedback: []\n")
	require.Eventually(t, func() bool { return r.logs.FilterMessage("feedback updated").Len() == 2 }, 5*time.Second, time.Millisecond)
	r.feed(t, vals, end, len(vals))
	assert.Len(t, incidentsStarted(r.rows[starts[next]:starts[next]+20]), 1)
}

// Inline feedback for an incident that has not happened yet waits for it:
// from the incident on, its series takes it in.
func TestFeedbackPendingUntilIncident(t *testing.T) {
	vals, starts := feedbackScenario()
	base := runValues(t, createDefaultConfig().(*Config), vals)
	first := incidentsStarted(base.rows)[0]

	cfg := createDefaultConfig().(*Config)
	cfg.Operator.Feedback = []rules.Feedback{{IncidentID: verdict.FormatID(first), Verdict: rules.VerdictNormal}}
	r, err := startOps(t, cfg, nil, nil)
	require.NoError(t, err)
	defer r.shutdown(t)
	r.feed(t, vals, 0, starts[0]+20)
	assert.Equal(t, []uint64{first}, incidentsStarted(r.rows), "the incident itself is reported")
	require.Eventually(t, func() bool { return r.logs.FilterMessage("feedback applied").Len() == 1 }, 5*time.Second, time.Millisecond)
	r.feed(t, vals, starts[0]+20, len(vals))
	checkAfterFeedback(t, r.rows, starts, 1)
}

// Feedback for an incident the processor never knew is dropped after an
// hour, with one warning and a count; feedback expires after feedback_ttl.
// (On a test clock: the processor's ticks run, the test says what time it
// is.)
func TestFeedbackUnknownAndExpiry(t *testing.T) {
	vals, starts := feedbackScenario()
	base := runValues(t, createDefaultConfig().(*Config), vals)
	first := incidentsStarted(base.rows)[0]

	var clock atomic.Int64
	clock.Store(time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC).UnixNano())
	advance := func(d time.Duration) { clock.Add(int64(d)) }
	cfg := createDefaultConfig().(*Config)
	cfg.Operator.FeedbackTTL = 24 * time.Hour
	cfg.Operator.Feedback = []rules.Feedback{
		{IncidentID: "00000000000000ff", Verdict: rules.VerdictNormal},
		{IncidentID: verdict.FormatID(first), Verdict: rules.VerdictNormal},
	}
	r, err := startOps(t, cfg, nil, func(p *iforestProcessor) {
		p.ops.fb.now = func() time.Time { return time.Unix(0, clock.Load()) }
	})
	require.NoError(t, err)
	defer r.shutdown(t)
	warnings := func() int { return len(r.logs.FilterLevelExact(zapcore.WarnLevel).All()) }
	segment := func(k int) { r.feed(t, vals, starts[k]-20, starts[k+1]-20) }

	r.feed(t, vals, 0, starts[1]-20)
	require.Eventually(t, func() bool { return r.logs.FilterMessage("feedback applied").Len() == 1 }, 5*time.Second, time.Millisecond)
	advance(59 * time.Minute)
	segment(1)
	checkAfterFeedback(t, r.rows, starts[:2], 1)
	assert.Zero(t, warnings(), "the unknown id still waits")

	advance(2 * time.Minute)
	require.Eventually(t, func() bool { return warnings() == 1 }, 5*time.Second, time.Millisecond)
	w := r.logs.FilterLevelExact(zapcore.WarnLevel).All()[0]
	assert.Contains(t, w.Message, "feedback names an incident this processor does not know")
	assert.Equal(t, "00000000000000ff", w.ContextMap()["incident_id"])
	set := attribute.NewSet(attribute.String("reason", "unknown_incident"))
	assert.EqualValues(t, 1, telemetrySum(t, r.tt, "otelcol_processor_iforest_rules_errors", &set))

	advance(22 * time.Hour) // 23 h after it was applied
	segment(2)
	checkAfterFeedback(t, r.rows, starts[:3], 2)
	assert.Zero(t, r.logs.FilterMessageSnippet("feedback expired").Len())

	advance(time.Hour)
	require.Eventually(t, func() bool { return r.logs.FilterMessageSnippet("feedback expired").Len() == 1 }, 5*time.Second, time.Millisecond)
	segment(3)
	assert.Len(t, incidentsStarted(r.rows[starts[3]:starts[3]+20]), 1, "expired: the excursion alarms again")
	assert.Equal(t, 1, warnings(), "dropped once")
}

// With storage the recent incidents and the feedback survive a restart:
// feedback written after the restart applies to an incident from before
// it, and applied feedback stays in force across the next one.
func TestFeedbackSurvivesRestart(t *testing.T) {
	vals, starts := feedbackScenario()
	file := filepath.Join(t.TempDir(), "rules.yaml")
	writeRules(t, file, "")
	st := newMemStorage()
	cfg := createDefaultConfig().(*Config)
	cfg.Operator.RulesFile, cfg.Storage = file, &storageID

	r1, err := startOps(t, cfg, extHost{storageID: st}, nil)
	require.NoError(t, err)
	r1.feed(t, vals, 0, starts[1]-20)
	r1.shutdown(t)
	ids := incidentsStarted(r1.rows)
	require.Len(t, ids, 1)

	writeRules(t, file, feedbackFile(ids[0]))
	r2, err := startOps(t, cfg, extHost{storageID: st}, nil)
	require.NoError(t, err)
	assert.Empty(t, r2.logs.FilterLevelExact(zapcore.WarnLevel).All())
	assert.Equal(t, []any{verdict.FormatID(ids[0])}, r2.logs.FilterMessage("feedback updated").All()[0].ContextMap()["applied"])
	r2.feed(t, vals, starts[1]-20, starts[3]-20)
	r2.shutdown(t)
	checkAfterFeedback(t, append(append([]rowVerdict(nil), r1.rows...), r2.rows...), starts[:3], 1)

	// The next restart: still in force, not applied anew.
	r3, err := startOps(t, cfg, extHost{storageID: st}, nil)
	require.NoError(t, err)
	assert.Zero(t, r3.logs.FilterMessage("feedback updated").Len())
	r3.feed(t, vals, starts[3]-20, len(vals))
	r3.shutdown(t)
	all := append(append(append([]rowVerdict(nil), r1.rows...), r2.rows...), r3.rows...)
	checkAfterFeedback(t, all, starts, 3)

	// A damaged table: one warning, a count, and the processor runs.
	st.mu.Lock()
	for k := range st.data {
		if filepath.Base(k) == feedbackKey {
			st.data[k] = []byte("damaged")
		}
	}
	st.mu.Unlock()
	r4, err := startOps(t, cfg, extHost{storageID: st}, nil)
	require.NoError(t, err)
	w := r4.logs.FilterLevelExact(zapcore.WarnLevel).All()
	require.Len(t, w, 1)
	assert.Contains(t, w[0].Message, "could not restore the saved feedback")
	r4.shutdown(t)
}

func verdictAt(score, value, lo, hi float64) *detector.Verdict {
	return &detector.Verdict{Status: detector.Scored, Score: score, Anomaly: true, HasExpected: !math.IsNaN(lo), ExpectedMin: lo, ExpectedMax: hi}
}

// Tolerances: the same direction, up to 1.5 times the largest departure
// beyond the band; by score where there is no band.
func TestTolerance(t *testing.T) {
	tol := newTolerance()
	tol.add(80, verdictAt(0.86, 80, 30, 50)) // 30 above
	tol.add(70, verdictAt(0.84, 70, 30, 45)) // 25 above
	assert.Equal(t, 30.0, tol.up)
	assert.Equal(t, -1.0, tol.down)
	assert.True(t, tol.band)
	for _, tc := range []struct {
		value, lo, hi, score float64
		want                 bool
	}{
		{95, 30, 50, 0.9, true},   // 45 = 1.5 x 30
		{96, 30, 50, 0.9, false},  // beyond
		{110, 40, 80, 0.9, true},  // 30 above a wider band
		{10, 30, 50, 0.9, false},  // the other way
		{45, 30, 50, 0.82, true},  // flagged inside the band, upper half
		{32, 30, 50, 0.82, false}, // lower half: nothing called normal below
		{0, math.NaN(), math.NaN(), 0.86, true},
		{0, math.NaN(), math.NaN(), 0.87, false},
	} {
		assert.Equal(t, tc.want, tol.covers(tc.value, verdictAt(tc.score, tc.value, tc.lo, tc.hi)), "%+v", tc)
	}
	noBand := newTolerance()
	noBand.add(math.NaN(), verdictAt(0.9, 0, math.NaN(), math.NaN()))
	assert.False(t, noBand.band)
	assert.True(t, noBand.covers(95, verdictAt(0.85, 95, 30, 50)), "no band recorded: by score")
	assert.False(t, noBand.covers(95, verdictAt(0.95, 95, 30, 50)))
}

// Feedback applied while its incident is open covers the points that the
// incident flags after that too, however the processor's ticks fall.
func TestFeedbackAppliedDuringItsIncident(t *testing.T) {
	f := newFeedback(16, time.Hour, zap.NewNop(), time.Now)
	const key, id = 7, 42
	first := verdictAt(0.86, 60, 30, 50)
	first.IncidentID = id
	f.record(key, 60, first) // 10 above the band
	f.setList([]uint64{id})  // applied now, while the incident goes on
	later := verdictAt(0.9, 80, 30, 50)
	later.IncidentID = id
	f.record(key, 80, later) // 30 above
	assert.True(t, f.tolerates(key, 95, verdictAt(0.9, 95, 30, 50)), "45 above: within 1.5 x the incident's 30")
	assert.False(t, f.tolerates(key, 96, verdictAt(0.9, 96, 30, 50)))
}

// The incident table is bounded (oldest out first) and counted; the saved
// form round-trips and rejects damage.
func TestFeedbackTableBoundAndEncoding(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	f := newFeedback(100, time.Hour, zap.NewNop(), func() time.Time { return now })
	for i := range 1000 {
		f.record(uint64(i%7), float64(60+i%10), &detector.Verdict{Status: detector.Scored, Anomaly: true, Score: 0.9, IncidentID: uint64(1000 + i), HasExpected: true, ExpectedMin: 30, ExpectedMax: 50})
	}
	assert.Len(t, f.incidents, 100)
	assert.NotNil(t, f.incidents[1999], "the newest stay")
	assert.Nil(t, f.incidents[1899], "the oldest go")
	assert.Positive(t, f.memoryBytes())
	f.setList([]uint64{1999, 1998, 5})
	assert.EqualValues(t, fbActive, f.entries[1999].state)
	assert.EqualValues(t, fbPending, f.entries[5].state)
	assert.EqualValues(t, 2, f.active.Load(), "1999 and 1998 are series 4 and 3")

	data := f.encode()
	g := newFeedback(100, time.Hour, zap.NewNop(), func() time.Time { return now })
	require.NoError(t, g.decode(data))
	assert.Equal(t, f.incidents, g.incidents)
	assert.Equal(t, f.entries, g.entries)
	assert.Equal(t, data, g.encode(), "the same state, the same bytes")
	assert.True(t, g.tolerates(4, 60, verdictAt(0.9, 60, 30, 50)))

	small := newFeedback(10, time.Hour, zap.NewNop(), time.Now)
	require.NoError(t, small.decode(data))
	assert.Len(t, small.incidents, 10, "a smaller limit keeps the newest")
	assert.NotNil(t, small.incidents[1999])

	for name, bad := range map[string][]byte{
		"empty":     nil,
		"garbage":   []byte("not a feedback table at all"),
		"truncated": data[:len(data)/2],
		"flipped":   func() []byte { b := append([]byte(nil), data...); b[40] ^= 1; return b }(),
	} {
		h := newFeedback(100, time.Hour, zap.NewNop(), time.Now)
		assert.Error(t, h.decode(bad), name)
		assert.Empty(t, h.incidents, name)
	}
}

// Hidden incidents are bounded too.
func TestHiddenIncidentsBounded(t *testing.T) {
	h := hiddenIncidents{limit: 3}
	for k := range uint64(10) {
		v := detector.Verdict{Anomaly: true, Incident: detector.Started, IncidentID: 100 + k}
		h.apply(k, true, &v)
		assert.Zero(t, v.IncidentID)
		assert.Equal(t, detector.NoTransition, v.Incident)
	}
	assert.Len(t, h.byKey, 3)
	assert.EqualValues(t, 3, h.n.Load())
	assert.Positive(t, h.memoryBytes())
}
