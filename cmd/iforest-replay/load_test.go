package main

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/grpc/codes"
)

// runLoadArgs runs the tool with --load and the given flags against addr
// and returns the parsed --json report and stderr.
func runLoadArgs(t *testing.T, addr string, args ...string) (loadReport, string, error) {
	t.Helper()
	var stdout, stderr strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := runIO(ctx, append([]string{"--load", "--endpoint", addr, "--json"}, args...), &stdout, &stderr)
	var rep loadReport
	if stdout.Len() > 0 {
		if jerr := json.Unmarshal([]byte(stdout.String()), &rep); jerr != nil {
			t.Fatalf("--json output %q: %v", stdout.String(), jerr)
		}
	}
	return rep, stderr.String(), err
}

// loadPoint is one received datapoint with its series identity.
type loadPoint struct {
	host, metric, series string
	service              string
	ts                   pcommon.Timestamp
	value                float64
}

func loadPoints(t *testing.T, reqs []pmetric.Metrics) []loadPoint {
	t.Helper()
	var out []loadPoint
	for _, md := range reqs {
		for _, rm := range md.ResourceMetrics().All() {
			host, _ := rm.Resource().Attributes().Get("host.name")
			svc, _ := rm.Resource().Attributes().Get("service.name")
			for _, sm := range rm.ScopeMetrics().All() {
				if sm.Scope().Name() != scopeName {
					t.Errorf("scope %q", sm.Scope().Name())
				}
				for _, m := range sm.Metrics().All() {
					if m.Type() != pmetric.MetricTypeGauge {
						t.Fatalf("metric %s is %v, want gauge", m.Name(), m.Type())
					}
					for _, dp := range m.Gauge().DataPoints().All() {
						s, _ := dp.Attributes().Get("series")
						out = append(out, loadPoint{host.Str(), m.Name(), s.Str(), svc.Str(), dp.Timestamp(), dp.DoubleValue()})
					}
				}
			}
		}
	}
	return out
}

func TestLoadSendsCountedPointsOfEverySeries(t *testing.T) {
	rec := &recorder{}
	addr := startServer(t, rec)
	before := time.Now()
	rep, out, err := runLoadArgs(t, addr, "--series", "50", "--metrics", "2", "--series-per-resource", "10",
		"--points", "1000", "--batch", "30", "--workers", "3", "--duration", "0", "--quiet")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	reqs := rec.requests()
	pts := loadPoints(t, reqs)
	if len(pts) != 1000 || rep.DataPointsAccepted != 1000 || rep.DataPointsSent != 1000 {
		t.Fatalf("received %d points, report says sent %d accepted %d; want 1000", len(pts), rep.DataPointsSent, rep.DataPointsAccepted)
	}
	if rep.Requests != int64(len(reqs)) || rep.FailedRequests != 0 || rep.DataPointsFailed != 0 {
		t.Errorf("report %+v, server got %d requests", rep, len(reqs))
	}
	if rep.Series != 50 || rep.Workers != 3 || rep.Batch != 30 || rep.AcceptedPerSecond <= 0 {
		t.Errorf("report %+v", rep)
	}
	for _, md := range reqs {
		if n := md.DataPointCount(); n > 30 {
			t.Errorf("request with %d datapoints, batch is 30", n)
		}
	}
	last := map[string]pcommon.Timestamp{}
	for _, p := range pts {
		i, err := strconv.Atoi(p.series)
		if err != nil || i < 0 || i >= 50 {
			t.Fatalf("series attribute %q", p.series)
		}
		// Series i lives on host i/10 and metric i%2, always.
		if want := "load-0000" + strconv.Itoa(i/10); p.host != want {
			t.Errorf("series %d on host %q, want %q", i, p.host, want)
		}
		if want := "load.gauge." + strconv.Itoa(i%2); p.metric != want {
			t.Errorf("series %d in metric %q, want %q", i, p.metric, want)
		}
		if p.service != "iforest-load" {
			t.Errorf("service.name %q", p.service)
		}
		if p.ts <= last[p.series] {
			t.Errorf("series %s: timestamp %v not after %v", p.series, p.ts, last[p.series])
		}
		last[p.series] = p.ts
		if p.ts.AsTime().Before(before) || p.ts.AsTime().After(time.Now()) {
			t.Errorf("timestamp %v is not the time of sending", p.ts.AsTime())
		}
		if math.IsNaN(p.value) || p.value < 0 {
			t.Errorf("value %v", p.value)
		}
	}
	if len(last) != 50 {
		t.Errorf("%d distinct series, want 50", len(last))
	}
	if !strings.Contains(out, "accepted 1000 datapoints") {
		t.Errorf("text report %q", out)
	}
}

// The values look like gauges of different services: every series moves a
// little around its own level, levels differ by orders of magnitude.
func TestLoadValuesLookLikeTelemetry(t *testing.T) {
	rec := &recorder{}
	addr := startServer(t, rec)
	if _, out, err := runLoadArgs(t, addr, "--series", "20", "--points", "2000", "--batch", "100", "--workers", "2", "--quiet"); err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	bySeries := map[string][]float64{}
	for _, p := range loadPoints(t, rec.requests()) {
		bySeries[p.series] = append(bySeries[p.series], p.value)
	}
	var medians []float64
	for s, vs := range bySeries {
		slices.Sort(vs)
		med := vs[len(vs)/2]
		// Half the points within 10% of the median: noise, not a random walk.
		within := 0
		for _, v := range vs {
			if math.Abs(v-med) <= 0.1*med {
				within++
			}
		}
		if within < len(vs)/2 || vs[0] == vs[len(vs)-1] {
			t.Errorf("series %s: %d of %d points near the median %v, min %v max %v", s, within, len(vs), med, vs[0], vs[len(vs)-1])
		}
		medians = append(medians, med)
	}
	slices.Sort(medians)
	if medians[len(medians)-1] < 10*medians[0] {
		t.Errorf("levels %v span less than a decade", medians)
	}
}

func TestLoadSpikesAreRare(t *testing.T) {
	s := &loadSeries{level: 100, noise: 3}
	rng := rand.New(rand.NewPCG(1, 2))
	spikes := 0
	const n = 200000
	for range n {
		// Noise alone stays far below +50% of the level (16 sigma).
		if s.value(rng, angles{cosSwing: 1}) > 150 {
			spikes++
		}
	}
	// Expected n*spikeChance = 100.
	if spikes < 50 || spikes > 200 {
		t.Errorf("%d spikes in %d points, want about %v", spikes, n, n*spikeChance)
	}
}

// Each shape moves as its name says, around the series' level.
func TestLoadShapes(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const n = 100000
	values := func(sh shape, at func(i int) angles) []float64 {
		s := &loadSeries{shape: sh, level: 100, noise: 3, cosPhase: 1}
		out := make([]float64, n)
		for i := range out {
			out[i] = s.value(rng, at(i))
		}
		return out
	}
	still := func(int) angles { return angles{cosSwing: 1, cosDay: 1} }
	for _, v := range values(shapeConstant, still) {
		if v != 100 {
			t.Fatalf("constant series at %v, want its level 100", v)
		}
	}
	distinct := map[float64]bool{}
	for _, v := range values(shapeQuantised, still) {
		if q := v / 6; q != math.Round(q) {
			t.Fatalf("quantised value %v is not a multiple of 6 (twice the noise)", v)
		}
		distinct[v] = true
	}
	if len(distinct) < 3 || len(distinct) > 12 {
		t.Errorf("quantised series took %d distinct values, want a few", len(distinct))
	}
	// Over a day the daily series goes from about half its level to about
	// one and a half times it.
	day := values(shapeDaily, func(i int) angles {
		s, c := math.Sincos(2 * math.Pi * float64(i) / n)
		return angles{cosSwing: 1, sinDay: s, cosDay: c}
	})
	lo, hi := slices.Min(day), slices.Max(day)
	if lo > 55 || lo < 35 || hi < 145 || hi > 165 {
		t.Errorf("daily series spans [%v, %v], want about [50, 150]", lo, hi)
	}
	spikes := 0
	for _, v := range values(shapeSpikes, still) {
		if v > 150 {
			spikes++
		} else if math.Abs(v-100) > 6 { // 10 sigma of its quieter noise
			t.Fatalf("spikes series between spikes at %v, want near 100", v)
		}
	}
	if want := n * spikyChance; float64(spikes) < want/2 || float64(spikes) > 2*want {
		t.Errorf("%d spikes in %d points, want about %v", spikes, n, want)
	}
}

func TestLoadShapesFlag(t *testing.T) {
	var sink strings.Builder
	o, err := parseFlags([]string{"--load", "--shapes", "mix", "--series", "10", "--workers", "1"}, &sink)
	if err != nil {
		t.Fatal(err)
	}
	w := newLoadWorkers(o.loadOpts, nil, time.Now())[0]
	for i, s := range w.series {
		if want := shape(i % int(numShapes)); s.shape != want {
			t.Errorf("series %d has shape %v, want %v", i, s.shape, want)
		}
	}
	o, err = parseFlags([]string{"--load", "--shapes", "constant, daily"}, &sink)
	if err != nil || !slices.Equal(o.loadOpts.shapes, []shape{shapeConstant, shapeDaily}) {
		t.Errorf("--shapes constant,daily: %v, %v", o.loadOpts.shapes, err)
	}
	if o, err = parseFlags([]string{"--load"}, &sink); err != nil || !slices.Equal(o.loadOpts.shapes, []shape{shapeNoisy}) {
		t.Errorf("default shapes %v, %v; want noisy", o.loadOpts.shapes, err)
	}
	for _, args := range [][]string{{"--load", "--shapes", "wavy"}, {"--load", "--shapes", ""}, {"--file", "f.csv", "--metric", "m", "--shapes", "mix"}} {
		if _, err := parseFlags(args, &sink); err == nil {
			t.Errorf("parseFlags(%q): want error", args)
		}
	}
}

func TestLoadFailedRequestsAreNotSent(t *testing.T) {
	rec := &recorder{failFirst: 4, failCode: codes.Unavailable}
	addr := startServer(t, rec)
	rep, out, err := runLoadArgs(t, addr, "--series", "10", "--points", "300", "--batch", "50", "--workers", "1", "--retries", "0", "--quiet")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	got := 0
	for _, md := range rec.requests() {
		got += md.DataPointCount()
	}
	if got != 100 || rep.DataPointsAccepted != 100 || rep.DataPointsFailed != 200 || rep.FailedRequests != 4 || rep.Requests != 2 {
		t.Errorf("server got %d points; report %+v", got, rep)
	}
	if !strings.Contains(rep.LastError, "not ready") {
		t.Errorf("last error %q", rep.LastError)
	}

	// Retried requests are delivered once and counted once.
	rec = &recorder{failFirst: 2, failCode: codes.ResourceExhausted}
	addr = startServer(t, rec)
	rep, out, err = runLoadArgs(t, addr, "--series", "10", "--points", "100", "--batch", "50", "--workers", "1", "--quiet")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if rep.DataPointsAccepted != 100 || rep.Retries != 2 || rep.FailedRequests != 0 || len(rec.requests()) != 2 {
		t.Errorf("report %+v, server got %d requests", rep, len(rec.requests()))
	}
}

func TestLoadPartialSuccessIsNotAccepted(t *testing.T) {
	rec := &recorder{reject: 3}
	addr := startServer(t, rec)
	rep, out, err := runLoadArgs(t, addr, "--series", "10", "--points", "100", "--batch", "25", "--workers", "2", "--quiet")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if rep.DataPointsSent != 100 || rep.DataPointsRejected != 12 || rep.DataPointsAccepted != 88 {
		t.Errorf("report %+v", rep)
	}
}

func TestLoadNothingAcceptedIsAnError(t *testing.T) {
	rec := &recorder{failFirst: 1 << 30, failCode: codes.InvalidArgument}
	addr := startServer(t, rec)
	rep, _, err := runLoadArgs(t, addr, "--series", "5", "--points", "20", "--batch", "10", "--workers", "1", "--quiet")
	if err == nil {
		t.Fatal("want an error when every request fails")
	}
	if rep.DataPointsAccepted != 0 || rep.DataPointsFailed != 20 || rep.FailedRequests != 2 {
		t.Errorf("report %+v", rep)
	}
}

// Pacing can only slow the tool down: 300 points at 1000/s cannot be done
// before ~0.3 s (the last batch of each worker is due at 149/500 s).
func TestLoadRateIsALimit(t *testing.T) {
	rec := &recorder{}
	addr := startServer(t, rec)
	start := time.Now()
	rep, out, err := runLoadArgs(t, addr, "--series", "20", "--points", "300", "--batch", "10", "--workers", "2", "--rate", "1000", "--quiet")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if d := time.Since(start); d < 290*time.Millisecond {
		t.Errorf("took %v, want >= 0.29 s at --rate 1000", d)
	}
	if rep.AcceptedPerSecond > 1050 || rep.TargetRate != 1000 {
		t.Errorf("achieved %.0f dp/s at --rate 1000 (report %+v)", rep.AcceptedPerSecond, rep)
	}
}

// Without --points the run lasts --duration and prints progress lines. A
// request is due when its last point is due: at 50,000 dp/s over 4 workers
// a batch of 500 is due every 40 ms, well inside the 400 ms even on a
// loaded machine (at 5,000 dp/s the first one was due at 399 ms and a late
// timer left the run with nothing sent).
func TestLoadDurationAndProgress(t *testing.T) {
	rec := &recorder{}
	addr := startServer(t, rec)
	start := time.Now()
	rep, out, err := runLoadArgs(t, addr, "--series", "100", "--duration", "400ms", "--report-interval", "100ms", "--rate", "50000")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("stopped after %v, want >= --duration 400ms", d)
	}
	got := 0
	for _, md := range rec.requests() {
		got += md.DataPointCount()
	}
	if got == 0 || int64(got) != rep.DataPointsAccepted || rep.Batch != loadBatch {
		t.Errorf("server got %d points; report %+v", got, rep)
	}
	if strings.Count(out, "dp/s now") < 2 || !strings.Contains(out, "100 series, 4 workers, batch 500: accepted") {
		t.Errorf("stderr lacks progress lines or the final report:\n%s", out)
	}
}

func TestLoadFlags(t *testing.T) {
	var sink strings.Builder
	o, err := parseFlags([]string{"--load"}, &sink)
	if err != nil {
		t.Fatal(err)
	}
	if o.batch != loadBatch || o.loadOpts.series != 1000 || o.loadOpts.duration != time.Minute ||
		len(o.resource) != 1 || o.resource[0] != (attribute{"service.name", "iforest-load"}) {
		t.Errorf("defaults: %+v", o)
	}
	if o, err := parseFlags([]string{"--load", "--series", "3", "--workers", "8"}, &sink); err != nil || o.loadOpts.workers != 3 {
		t.Errorf("workers beyond series: %d, %v; want 3 (a worker owns whole series)", o.loadOpts.workers, err)
	}
	for _, args := range [][]string{
		{"--load", "--file", "f.csv"},
		{"--load", "--metric", "m"},
		{"--load", "--series", "0"},
		{"--load", "--series", "5", "--metrics", "6"},
		{"--load", "--workers", "0"},
		{"--load", "--batch", "0"},
		{"--load", "--rate", "-1"},
		{"--load", "--duration", "-1s"},
		{"--load", "--points", "-1"},
		{"--file", "f.csv", "--metric", "m", "--series", "5"},
		{"--file", "f.csv", "--metric", "m", "--json"},
	} {
		if _, err := parseFlags(args, &sink); err == nil {
			t.Errorf("parseFlags(%q): want error", args)
		}
	}
}

// BenchmarkLoadBuild is the generator's cost per datapoint without the
// network: building a request and encoding it as gRPC would.
func BenchmarkLoadBuild(b *testing.B) {
	lo := loadOptions{series: 1000, metrics: 1, perResource: 100, workers: 1, seed: 1}
	w := newLoadWorkers(lo, []attribute{{"service.name", "bench"}}, time.Now())[0]
	b.ReportAllocs()
	for b.Loop() {
		md := w.build(500, time.Now())
		if _, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*500), "ns/dp")
}
