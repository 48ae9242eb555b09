package iforestprocessor

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/otel-iforest/iforest/internal/metadatatest"
	"github.com/otel-iforest/iforest/internal/scenario"
	"github.com/otel-iforest/iforest/internal/verdict"
)

// opsRun is a processor put together as the factory does, with access to
// its insides (the rules file's poll interval, feedback's pending time).
type opsRun struct {
	p    *iforestProcessor
	tt   *componenttest.Telemetry
	logs *observer.ObservedLogs
	rows []rowVerdict // per consumed row (series "cpu" of oneGauge)
}

func startOps(t *testing.T, cfg *Config, host component.Host, tweak func(*iforestProcessor)) (*opsRun, error) {
	t.Helper()
	r := &opsRun{tt: componenttest.NewTelemetry()}
	t.Cleanup(func() { require.NoError(t, r.tt.Shutdown(context.Background())) })
	set := metadatatest.NewSettings(r.tt)
	core, logs := observer.New(zapcore.DebugLevel)
	set.Logger, r.logs = zap.New(core), logs
	p, err := newProcessor(set, cfg)
	require.NoError(t, err)
	p.ops.interval = 5 * time.Millisecond
	if tweak != nil {
		tweak(p)
	}
	r.p = p
	if host == nil {
		host = componenttest.NewNopHost()
	}
	if err := p.start(context.Background(), host); err != nil {
		r.shutdown(t)
		return nil, err
	}
	return r, nil
}

func (r *opsRun) shutdown(t *testing.T) {
	t.Helper()
	require.NoError(t, r.p.shutdown(context.Background()))
}

// rowVerdict is what the processor wrote on one datapoint.
type rowVerdict struct {
	scored, detected bool
	score            float64
	incident         string // started, ended or ""
	id               uint64
	expMin, expMax   float64
	hasIncidentAttrs bool
	value            float64
	hasExpected      bool
}

func readVerdict(dp pmetric.NumberDataPoint) rowVerdict {
	a := dp.Attributes()
	v := rowVerdict{value: dp.DoubleValue()}
	if s, ok := a.Get("anomaly.score"); ok {
		v.scored, v.score = true, s.Double()
	}
	if d, ok := a.Get("anomaly.detected"); ok {
		v.detected = d.Bool()
	}
	if s, ok := a.Get("anomaly.incident"); ok {
		v.incident = s.Str()
	}
	if s, ok := a.Get("anomaly.incident.id"); ok {
		v.hasIncidentAttrs = true
		v.id, _ = verdict.ParseID(s.Str())
	}
	if s, ok := a.Get("anomaly.expected.min"); ok {
		v.expMin, v.hasExpected = s.Double(), true
	}
	if s, ok := a.Get("anomaly.expected.max"); ok {
		v.expMax = s.Double()
	}
	return v
}

// oneGauge is one datapoint of the gauge "cpu" on host db-1 at minute i.
func oneGauge(i int, v float64) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("host.name", "db-1")
	m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("cpu")
	dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
	dp.SetTimestamp(stepTime(i))
	dp.SetDoubleValue(v)
	return md
}

// feed runs values[from:to] through the processor, one row a batch, and
// keeps the verdicts.
func (r *opsRun) feed(t *testing.T, values []float64, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		md, err := r.p.processMetrics(context.Background(), oneGauge(i, values[i]))
		require.NoError(t, err)
		dp := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Gauge().DataPoints().At(0)
		r.rows = append(r.rows, readVerdict(dp))
	}
}

// incidents returns the incident ids the rows started.
func incidentsStarted(rows []rowVerdict) []uint64 {
	var ids []uint64
	for _, v := range rows {
		if v.incident == verdict.Started {
			ids = append(ids, v.id)
		}
	}
	return ids
}

// excursions is scenario.Excursions' values.
func excursions(n, first, period int, sizes map[int]float64, seed uint64) ([]float64, []int) {
	rows, starts := scenario.Excursions(seed, n, first, period, sizes)
	vals := make([]float64, n)
	for i, r := range rows {
		vals[i] = r.Value
	}
	return vals, starts
}

// writeRules writes a rules file atomically enough for the poller: a new
// file renamed over the old one.
func writeRules(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".rules.tmp")
	require.NoError(t, os.WriteFile(tmp, []byte(content), 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

func flaggedIn(rows []rowVerdict, from, to int) int {
	n := 0
	for _, v := range rows[from:min(to, len(rows))] {
		if v.detected {
			n++
		}
	}
	return n
}
