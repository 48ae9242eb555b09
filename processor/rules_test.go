package iforestprocessor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.opentelemetry.io/otel/attribute"
	"go.uber.org/zap/zapcore"

	"github.com/otel-iforest/iforest/internal/metadata"
	"github.com/otel-iforest/iforest/internal/rules"
	"github.com/otel-iforest/iforest/internal/scenario"
	"github.com/otel-iforest/iforest/internal/verdict"
)

// configFromYAML decodes processor settings as the collector would.
func configFromYAML(t *testing.T, y string) (*Config, error) {
	t.Helper()
	ret, err := confmap.NewRetrievedFromYAML([]byte(y))
	require.NoError(t, err)
	conf, err := ret.AsConf()
	require.NoError(t, err)
	cfg := createDefaultConfig().(*Config)
	if err := conf.Unmarshal(cfg); err != nil {
		return nil, err
	}
	return cfg, confmap.Validate(cfg)
}

func TestRulesConfig(t *testing.T) {
	cfg, err := configFromYAML(t, `
rules:
  - name: nightly-backup
    match:
      metrics: ['system\.disk\..*']
      attributes: {device: sda}
      resource_attributes: {host.name: db-1}
    when:
      daily: ["01:00-03:30"]
      weekly: ["Sat 00:00-Sun 24:00"]
      between: [["2026-12-24T00:00:00Z", "2026-12-27T00:00:00Z"]]
    action: mute
rules_file: /etc/otelcol/iforest-rules.yaml
feedback: [{incident_id: 5f3c9a0d12ab34ef, verdict: normal}]
feedback_ttl: 168h
`)
	require.NoError(t, err)
	assert.Equal(t, OperatorConfig{
		Rules: []rules.Rule{{
			Name: "nightly-backup",
			Match: rules.Match{
				Metrics:            []string{`system\.disk\..*`},
				Attributes:         map[string]any{"device": "sda"},
				ResourceAttributes: map[string]any{"host.name": "db-1"},
			},
			When: rules.When{
				Daily: []string{"01:00-03:30"}, Weekly: []string{"Sat 00:00-Sun 24:00"},
				Between: [][]string{{"2026-12-24T00:00:00Z", "2026-12-27T00:00:00Z"}},
			},
			Action: rules.ActionMute,
		}},
		RulesFile:   "/etc/otelcol/iforest-rules.yaml",
		Feedback:    []rules.Feedback{{IncidentID: "5f3c9a0d12ab34ef", Verdict: "normal"}},
		FeedbackTTL: 168 * time.Hour,
	}, cfg.Operator)
	assert.Equal(t, 30*24*time.Hour, createDefaultConfig().(*Config).Operator.FeedbackTTL)

	_, err = configFromYAML(t, `
rules:
  - {name: a, action: mute}
  - {name: b, action: skip, when: {daily: ["22:00-06:00", "25:00-01:00"]}}
  - {name: c, action: mute, when: {between: [["2026-12-27T00:00:00Z", "2026-12-24T00:00:00Z"]]}}
feedback: [{incident_id: nope, verdict: normal}]
feedback_ttl: 0s
`)
	require.Error(t, err)
	assert.ErrorContains(t, err, `rules[1].when.daily[1]: "25:00-01:00": "25:00" is not a time of day`)
	assert.ErrorContains(t, err, "rules[2].when.between[0]: the end 2026-12-24T00:00:00Z is not after the start 2026-12-27T00:00:00Z")
	assert.ErrorContains(t, err, `feedback[0].incident_id: must be an incident id as in anomaly.incident.id (16 hex digits), got "nope"`)
	assert.ErrorContains(t, err, "feedback_ttl: must be positive, got 0s")

	_, err = configFromYAML(t, "rules: [{name: a, action: mute, whn: {}}]\n")
	assert.ErrorContains(t, err, "whn")
}

// seedValues is a generated seed scenario: values and where its spikes start.
func seedValues(seed uint64) ([]float64, []int) {
	rows := scenario.SeedCPU(seed, nil)
	vals := make([]float64, len(rows))
	for i, r := range rows {
		vals[i] = r.Value
	}
	return vals, []int{87, 646, 859}
}

// between is a rule's window from row a to row b (exclusive) of oneGauge.
func between(a, b int) [][]string {
	return [][]string{{stepTime(a).AsTime().Format(time.RFC3339), stepTime(b).AsTime().Format(time.RFC3339)}}
}

func withRules(rs ...rules.Rule) *Config {
	cfg := createDefaultConfig().(*Config)
	cfg.Operator.Rules = rs
	return cfg
}

// freshLedger gives the test its own incident ledger, so that it can tell
// which incidents this run reported.
func freshLedger(t *testing.T) *verdict.Ledger {
	old := verdict.Default
	verdict.Default = verdict.NewLedger(verdict.MaxEntries, verdict.Grace, time.Now)
	t.Cleanup(func() { verdict.Default = old })
	return verdict.Default
}

func runValues(t *testing.T, cfg *Config, vals []float64) *opsRun {
	t.Helper()
	r, err := startOps(t, cfg, nil, nil)
	require.NoError(t, err)
	r.feed(t, vals, 0, len(vals))
	r.shutdown(t)
	return r
}

func ruleCount(t *testing.T, r *opsRun, rule, action string) int64 {
	t.Helper()
	set := attribute.NewSet(attribute.String("rule", rule), attribute.String("action", action))
	return telemetrySum(t, r.tt, "otelcol_processor_iforest_rule_datapoints", &set)
}

func suppressedCount(t *testing.T, r *opsRun, reason string) int64 {
	t.Helper()
	set := attribute.NewSet(attribute.String("reason", reason))
	return telemetrySum(t, r.tt, "otelcol_processor_iforest_anomalies_suppressed", &set)
}

// A skip rule over the second spike: the first and third spikes are
// flagged as before, the window's datapoints pass through unscored.
func TestSkipRule(t *testing.T) {
	vals, spikes := seedValues(7)
	from, to := spikes[1]-6, spikes[1]+14
	base := runValues(t, createDefaultConfig().(*Config), vals)
	for _, s := range spikes {
		require.True(t, base.rows[s].detected, "without rules the spike at row %d is flagged", s)
	}

	r := runValues(t, withRules(rules.Rule{Name: "maintenance", When: rules.When{Between: between(from, to)}, Action: rules.ActionSkip}), vals)
	for i, v := range r.rows {
		require.Equal(t, vals[i], v.value, "row %d passes through unchanged", i)
		switch {
		case i < from:
			require.Equal(t, base.rows[i], v, "row %d, before the window", i)
		case i < to:
			require.False(t, v.scored, "row %d, in the window, is not scored", i)
			require.False(t, v.hasIncidentAttrs, "row %d", i)
		}
	}
	assert.True(t, r.rows[spikes[0]].detected)
	assert.True(t, r.rows[spikes[2]].detected, "the third spike is flagged at its first point")
	assert.Equal(t, 5, flaggedIn(r.rows, spikes[2], spikes[2]+5))
	assert.Len(t, incidentsStarted(r.rows), 2)
	assert.EqualValues(t, to-from, ruleCount(t, r, "maintenance", rules.ActionSkip))
}

// A mute rule over the second spike: the model scores and learns exactly
// as without it (every score is the same), nothing in the window is flagged
// or reported, the other spikes are flagged as before, and the muted
// incident never reaches the ledger.
func TestMuteRule(t *testing.T) {
	vals, spikes := seedValues(7)
	from, to := spikes[1]-6, spikes[1]+14

	muted := freshLedger(t)
	r := runValues(t, withRules(rules.Rule{Name: "deploy", When: rules.When{Between: between(from, to)}, Action: rules.ActionMute}), vals)
	freshLedger(t)
	base := runValues(t, createDefaultConfig().(*Config), vals)

	inWindow := 0
	for i, v := range r.rows {
		b := base.rows[i]
		require.Equal(t, b.scored, v.scored, "row %d", i)
		require.Equal(t, b.score, v.score, "row %d: the same score as without the rule", i)
		if i >= from && i < to {
			require.False(t, v.detected, "row %d is muted", i)
			require.False(t, v.hasIncidentAttrs, "row %d: no incident while muted", i)
			if b.detected {
				inWindow++
			}
			continue
		}
		require.Equal(t, b, v, "row %d, outside the window", i)
	}
	require.Equal(t, 5, inWindow, "without the rule the second spike is flagged")
	assert.EqualValues(t, inWindow, suppressedCount(t, r, "mute"))
	assert.EqualValues(t, to-from, ruleCount(t, r, "deploy", rules.ActionMute))

	baseIDs := incidentsStarted(base.rows)
	require.Len(t, baseIDs, 3)
	assert.Equal(t, []uint64{baseIDs[0], baseIDs[2]}, incidentsStarted(r.rows))
	reader := muted.Reader(t.Name())
	assert.Equal(t, verdict.Unknown, reader.ClaimStart(baseIDs[1]), "the muted incident is not in the ledger")
	assert.Equal(t, verdict.Unknown, reader.ClaimEnd(baseIDs[1]))
	assert.Equal(t, verdict.Vouched, reader.ClaimStart(baseIDs[2]))
}

// A mute window that ends while the trouble goes on: the first flag after
// it starts a reported incident (the detector's, under its id), which ends
// as usual.
func TestMuteWindowEndsDuringIncident(t *testing.T) {
	vals, _ := seedValues(3)
	const start = 400
	for i := range 20 { // a climb that stays beyond everything seen
		vals[start+i] = 60 + 3*float64(i)
	}
	freshLedger(t)
	base := runValues(t, createDefaultConfig().(*Config), vals)
	require.Equal(t, verdict.Started, base.rows[start].incident)
	id := base.rows[start].id
	require.Equal(t, 20, flaggedIn(base.rows, start, start+20), "the climb is flagged throughout")

	ledger := freshLedger(t)
	r := runValues(t, withRules(rules.Rule{Name: "job", When: rules.When{Between: between(start-5, start+8)}, Action: rules.ActionMute}), vals)
	for i := start - 5; i < start+8; i++ {
		assert.False(t, r.rows[i].detected, "row %d muted", i)
		assert.False(t, r.rows[i].hasIncidentAttrs, "row %d muted", i)
	}
	first := r.rows[start+8]
	assert.True(t, first.detected)
	assert.Equal(t, verdict.Started, first.incident, "the first flag after the window starts the incident")
	assert.Equal(t, id, first.id)
	var ended []int
	for i, v := range r.rows[start-5 : start+60] { // (the seed's spikes are further away)
		if v.incident == verdict.Ended {
			ended = append(ended, i)
			assert.Equal(t, id, v.id)
		}
	}
	assert.Len(t, ended, 1)
	assert.Equal(t, []uint64{id}, incidentsStarted(r.rows[start-5:start+60]))
	reader := ledger.Reader(t.Name())
	assert.Equal(t, verdict.Vouched, reader.ClaimStart(id))
	assert.Equal(t, verdict.Vouched, reader.ClaimEnd(id))
}

// Rules match on metric names, datapoint and resource attributes; a skip
// wins over a mute; joined (entity) models are muted when a datapoint that
// fed the vector is.
func TestRulesMatchAndEntityModels(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.Models = []ModelConfig{hostModel()}
	cfg.Operator.Rules = []rules.Rule{
		{Name: "host-a-memory", Match: rules.Match{Metrics: []string{`system\.memory\..*`}, ResourceAttributes: map[string]any{"host.name": "a"}}, When: rules.When{Between: between(75, 90)}, Action: rules.ActionMute},
		{Name: "idle", Match: rules.Match{Metrics: []string{`system\.cpu\.utilization`}, Attributes: map[string]any{"state": "idle"}}, Action: rules.ActionSkip},
	}
	r, err := startOps(t, cfg, nil, nil)
	require.NoError(t, err)
	var out []pmetric.Metrics
	for step := range 81 {
		busy := 0.0
		if step == 80 {
			busy = 0.95
		}
		md, err := r.p.processMetrics(context.Background(), hostScrape(step, busy, true))
		require.NoError(t, err)
		out = append(out, md)
	}
	r.shutdown(t)
	last := out[80]
	for _, host := range []string{"a", "b"} {
		for _, dp := range dpsOf(last, host, "system.cpu.utilization") {
			attrs := dp.Attributes()
			state, _ := attrs.Get("state")
			_, scored := attrs.Get("anomaly.score")
			if state.Str() == "idle" {
				assert.False(t, scored, "idle datapoints are skipped")
				continue
			}
			require.True(t, scored)
			det, _ := attrs.Get("anomaly.detected")
			assert.False(t, det.Bool(), "host %s: the host model's verdict is muted (a) or quiet (b)", host)
			_, inc := attrs.Get("anomaly.incident")
			assert.False(t, inc)
		}
	}
	assert.EqualValues(t, 81*2*2, ruleCount(t, r, "idle", rules.ActionSkip), "2 hosts x 2 cpus a scrape")
	assert.EqualValues(t, 6*2, ruleCount(t, r, "host-a-memory", rules.ActionMute), "host a's 2 memory datapoints, steps 75-80")
	assert.EqualValues(t, 1, suppressedCount(t, r, "mute"), "the busy host's vector")
}

// An invalid rules file fails the start, naming the file and the key; so
// does a missing one.
func TestRulesFileAtStart(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "rules.yaml")
	cfg := createDefaultConfig().(*Config)
	cfg.Operator.RulesFile = file

	p, err := NewFactory().CreateMetrics(context.Background(), processortest.NewNopSettings(metadata.Type), cfg, new(consumertest.MetricsSink))
	require.NoError(t, err)
	err = p.Start(context.Background(), componenttest.NewNopHost())
	assert.ErrorContains(t, err, "rules_file: stat "+file)
	require.NoError(t, p.Shutdown(context.Background()))

	writeRules(t, file, "rules:\n  - {name: x, action: mute, when: {daily: [\"01:00-01:00\"]}}\n")
	p, err = NewFactory().CreateMetrics(context.Background(), processortest.NewNopSettings(metadata.Type), cfg, new(consumertest.MetricsSink))
	require.NoError(t, err)
	err = p.Start(context.Background(), componenttest.NewNopHost())
	assert.ErrorContains(t, err, fmt.Sprintf(`rules_file (%s): rules[0].when.daily[0]: "01:00-01:00": the range is empty`, file))
	require.NoError(t, p.Shutdown(context.Background()))

	cfg.Operator.Rules = []rules.Rule{{Name: "x", Action: rules.ActionSkip}}
	writeRules(t, file, "rules:\n  - {name: x, action: mute}\n")
	_, err = startOps(t, cfg, nil, nil)
	assert.ErrorContains(t, err, `rules[0].name: "x" is also the name of rules[0] in the processor's configuration`)

	// Valid: starts, watches the file, stops it at shutdown (goleak).
	writeRules(t, file, "rules:\n  - {name: y, action: mute}\nfeedback: []\n")
	p, err = NewFactory().CreateMetrics(context.Background(), processortest.NewNopSettings(metadata.Type), cfg, new(consumertest.MetricsSink))
	require.NoError(t, err)
	require.NoError(t, p.Start(context.Background(), componenttest.NewNopHost()))
	require.NoError(t, p.ConsumeMetrics(context.Background(), oneGauge(0, 1)))
	require.NoError(t, p.Shutdown(context.Background()))
}

// The rules file is re-read when it changes: new rules apply without a
// restart; a broken or missing file keeps the rules in force, with one
// warning naming the file and the key and a count.
func TestRulesFileReload(t *testing.T) {
	file := filepath.Join(t.TempDir(), "rules.yaml")
	writeRules(t, file, "")
	cfg := createDefaultConfig().(*Config)
	cfg.Operator.RulesFile = file
	r, err := startOps(t, cfg, nil, nil)
	require.NoError(t, err)
	defer r.shutdown(t)
	vals, _ := seedValues(1)
	r.feed(t, vals, 0, 50)
	require.True(t, r.rows[49].scored)

	loaded := func(n int) {
		t.Helper()
		require.Eventually(t, func() bool { return r.logs.FilterMessage("rules file loaded").Len() >= n }, 5*time.Second, time.Millisecond)
	}
	writeRules(t, file, "rules:\n  - {name: maintenance, action: skip, match: {resource_attributes: {host.name: db-1}}}\n")
	loaded(1)
	r.feed(t, vals, 50, 60)
	for _, v := range r.rows[50:60] {
		require.False(t, v.scored, "skipped after the reload")
	}

	errorsOf := func() int64 {
		set := attribute.NewSet(attribute.String("reason", "rules_file"))
		return telemetrySum(t, r.tt, "otelcol_processor_iforest_rules_errors", &set)
	}
	warned := func(n int) {
		t.Helper()
		require.Eventually(t, func() bool { return len(r.logs.FilterLevelExact(zapcore.WarnLevel).All()) >= n }, 5*time.Second, time.Millisecond)
	}
	writeRules(t, file, "rules:\n  - {name: maintenance, action: silence}\n")
	warned(1)
	w := r.logs.FilterLevelExact(zapcore.WarnLevel).All()[0]
	assert.Equal(t, "the rules file is invalid; the rules in force stay", w.Message)
	assert.Equal(t, file, w.ContextMap()["rules_file"])
	assert.Contains(t, w.ContextMap()["error"], `rules[0].action: must be "mute" or "skip", got "silence"`)
	time.Sleep(30 * time.Millisecond) // several polls of the same broken file
	assert.Len(t, r.logs.FilterLevelExact(zapcore.WarnLevel).All(), 1, "one warning per change")
	assert.EqualValues(t, 1, errorsOf())
	r.feed(t, vals, 60, 65)
	for _, v := range r.rows[60:65] {
		require.False(t, v.scored, "the previous rules stay")
	}

	require.NoError(t, os.Remove(file))
	warned(2)
	assert.Equal(t, "cannot read the rules file; the rules in force stay", r.logs.FilterLevelExact(zapcore.WarnLevel).All()[1].Message)
	assert.EqualValues(t, 2, errorsOf())

	writeRules(t, file, "rules: []\n")
	loaded(2)
	r.feed(t, vals, 65, 70)
	for _, v := range r.rows[65:70] {
		require.True(t, v.scored, "no rules any more")
	}
	assert.EqualValues(t, 15, ruleCount(t, r, "maintenance", rules.ActionSkip))
}

// Reloads while batches flow (run with -race): every datapoint comes out,
// and the rules of the last file are the ones in force.
func TestRulesFileReloadUnderLoad(t *testing.T) {
	file := filepath.Join(t.TempDir(), "rules.yaml")
	writeRules(t, file, "")
	cfg := createDefaultConfig().(*Config)
	cfg.Operator.RulesFile = file
	r, err := startOps(t, cfg, nil, func(p *iforestProcessor) { p.ops.interval = time.Millisecond })
	require.NoError(t, err)

	contents := []string{
		"rules:\n  - {name: a, action: skip, match: {metrics: [cpu]}}\n",
		"rules:\n  - {name: b, action: mute, when: {daily: [\"00:00-12:00\"]}}\nfeedback: [{incident_id: 00000000000000ff, verdict: normal}]\n",
		"rules: [{name: c, action: bad}]\n",
		"",
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var mu sync.Mutex
	in, out := 0, 0
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				md := makeBatch(w*100000+i, i%50 == 49)
				n := md.DataPointCount()
				got, err := r.p.processMetrics(context.Background(), md)
				assert.NoError(t, err)
				mu.Lock()
				in, out = in+n, out+got.DataPointCount()
				mu.Unlock()
			}
		}()
	}
	inForce := map[string]bool{} // the rule sets seen in force during the load
	for i := range 60 {
		writeRules(t, file, contents[i%len(contents)])
		time.Sleep(2 * time.Millisecond)
		name := "none"
		if s := r.p.ops.set.Load(); s != nil && len(s.Rules) > 0 {
			name = s.Rules[0].Name
		}
		inForce[name] = true
	}
	close(stop)
	wg.Wait()
	assert.Equal(t, in, out)
	assert.Positive(t, in)
	assert.GreaterOrEqual(t, len(inForce), 2, "the rules were reloaded while batches flowed: %v", inForce)

	writeRules(t, file, "rules:\n  - {name: last, action: skip}\n")
	require.Eventually(t, func() bool {
		s := r.p.ops.set.Load()
		return len(s.Rules) == 1 && s.Rules[0].Name == "last"
	}, 5*time.Second, time.Millisecond)
	md, err := r.p.processMetrics(context.Background(), makeBatch(1, false))
	require.NoError(t, err)
	scored, _ := scoredIn(md)
	assert.Zero(t, scored, "everything is skipped")
	r.shutdown(t)
}
