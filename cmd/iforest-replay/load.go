package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

// loadOptions are the --load settings (rate, batch, endpoint, retries and
// resource are shared with the replay and live in options).
type loadOptions struct {
	series      int
	metrics     int
	perResource int
	duration    time.Duration
	workers     int
	points      int64
	seed        uint64
	reportEvery time.Duration
	json        bool
	shapes      []shape // series i has shapes[i % len(shapes)]
}

// loadOnlyFlags mean nothing without --load; a replay that sets one is
// refused rather than silently ignoring it.
var loadOnlyFlags = []string{"series", "metrics", "series-per-resource", "duration", "workers", "points", "seed", "report-interval", "json", "shapes"}

// loadBatch is the default request size of --load: large enough that gRPC
// overhead per point is small, like a batch processor's output.
const loadBatch = 500

func (o *options) checkLoad(set map[string]bool, resource string) error {
	for _, name := range []string{"file", "metric", "column", "columns", "timestamp-column"} {
		if set[name] {
			return fmt.Errorf("--%s cannot be used with --load", name)
		}
	}
	lo := &o.loadOpts
	if !set["batch"] {
		o.batch = loadBatch
	}
	if !set["resource"] {
		resource = "service.name=iforest-load"
	}
	var err error
	if o.resource, err = parseResource(resource); err != nil {
		return err
	}
	switch {
	case lo.series < 1:
		return fmt.Errorf("--series must be >= 1, got %d", lo.series)
	case lo.metrics < 1 || lo.metrics > lo.series:
		return fmt.Errorf("--metrics must be in [1, --series], got %d", lo.metrics)
	case lo.perResource < 1:
		return fmt.Errorf("--series-per-resource must be >= 1, got %d", lo.perResource)
	case lo.workers < 1:
		return fmt.Errorf("--workers must be >= 1, got %d", lo.workers)
	case lo.duration < 0:
		return fmt.Errorf("--duration must be >= 0, got %v", lo.duration)
	case lo.points < 0:
		return fmt.Errorf("--points must be >= 0, got %d", lo.points)
	case lo.reportEvery <= 0:
		return fmt.Errorf("--report-interval must be > 0, got %v", lo.reportEvery)
	case o.batch < 1:
		return fmt.Errorf("--batch must be >= 1, got %d", o.batch)
	case o.rate < 0:
		return fmt.Errorf("--rate must be >= 0, got %v", o.rate)
	case o.retries < 0:
		return fmt.Errorf("--retries must be >= 0, got %d", o.retries)
	}
	// A worker owns whole series (so each series stays in time order), so
	// more workers than series would idle.
	lo.workers = min(lo.workers, lo.series)
	return nil
}

// shape is how a synthetic series moves (--shapes).
type shape uint8

const (
	// noisy: a level with a slow swing, noise and a rare spike, like a
	// utilisation or latency gauge (the default).
	shapeNoisy shape = iota
	// constant: the level, always (a setting, a capacity).
	shapeConstant
	// quantised: the noisy shape without spikes, in steps of twice the
	// noise (a count of connections, of pods).
	shapeQuantised
	// daily: a cycle over the UTC day of half the level, with noise (the
	// traffic of a service).
	shapeDaily
	// spikes: a quiet level, a spike about every 500 points (errors).
	shapeSpikes
	numShapes
)

var shapeNames = [numShapes]string{"noisy", "constant", "quantised", "daily", "spikes"}

func (s shape) String() string { return shapeNames[s] }

// parseShapes reads --shapes: shape names separated by commas, or mix for
// all of them.
func parseShapes(v string) ([]shape, error) {
	if strings.TrimSpace(v) == "mix" {
		out := make([]shape, numShapes)
		for i := range out {
			out[i] = shape(i)
		}
		return out, nil
	}
	var out []shape
	for part := range strings.SplitSeq(v, ",") {
		i := slices.Index(shapeNames[:], strings.TrimSpace(part))
		if i < 0 {
			return nil, fmt.Errorf("--shapes: unknown shape %q (want mix, or a list of %s)", strings.TrimSpace(part), strings.Join(shapeNames[:], ", "))
		}
		out = append(out, shape(i))
	}
	return out, nil
}

// loadSeries is one synthetic series of a given shape around its level.
type loadSeries struct {
	resource int    // index into the resources' host names
	metric   int    // index into the metric names
	id       string // value of the `series` datapoint attribute
	shape    shape
	level    float64
	noise    float64 // standard deviation of the noise
	// sin and cos of the series' phase of the slow swing (so series do not
	// move in lockstep): sin(a+p) = sin a cos p + cos a sin p costs no
	// math.Sin per point.
	sinPhase, cosPhase float64
	last               pcommon.Timestamp
}

// spikeChance is the probability that a point of a noisy series is a
// spike: about one per series every half hour at one point per second.
// Series of the spikes shape have one about every 500 points.
const (
	spikeChance      = 1.0 / 2000
	spikyChance      = 1.0 / 500
	spikyNoiseFactor = 0.2 // their noise, of a noisy series'
)

// swingPeriod is the period of the slow swing around each series' level.
const swingPeriod = 10 * time.Minute

// swingAt is sin and cos of the swing's angle at since, shared by all
// series of a request.
func swingAt(since time.Duration) (sin, cos float64) {
	return math.Sincos(2 * math.Pi * since.Seconds() / swingPeriod.Seconds())
}

// dayAt is sin and cos of the UTC day's angle at t, shared by all series
// of a request.
func dayAt(t time.Time) (sin, cos float64) {
	sec := t.Unix() % 86400
	return math.Sincos(2 * math.Pi * float64(sec) / 86400)
}

// angles are the cycles' angles at the time of a request (see swingAt,
// dayAt).
type angles struct{ sinSwing, cosSwing, sinDay, cosDay float64 }

func (s *loadSeries) value(rng *rand.Rand, a angles) float64 {
	var v float64
	switch s.shape {
	case shapeConstant:
		return s.level
	case shapeQuantised:
		q := 2 * s.noise
		v = q * math.Round(s.swing(a)/q+rng.NormFloat64()*s.noise/q)
	case shapeDaily:
		day := a.sinDay*s.cosPhase + a.cosDay*s.sinPhase
		v = s.level*(1+0.5*day) + rng.NormFloat64()*s.noise
	case shapeSpikes:
		v = s.level + rng.NormFloat64()*s.noise*spikyNoiseFactor
		if rng.Float64() < spikyChance {
			v += s.level * (1 + 2*rng.Float64())
		}
	default:
		v = s.swing(a) + rng.NormFloat64()*s.noise
		if rng.Float64() < spikeChance {
			v += s.level * (1 + 2*rng.Float64())
		}
	}
	return math.Max(v, 0) // gauges like these are never negative
}

// swing is the level with the series' slow swing of 10% at the request's
// time.
func (s *loadSeries) swing(a angles) float64 {
	return s.level + 0.1*s.level*(a.sinSwing*s.cosPhase+a.cosSwing*s.sinPhase)
}

// loadGen is the shared, read-only description of the generated traffic.
type loadGen struct {
	resource  []attribute // from --resource, on every resource
	hostNames []string
	metrics   []string
	start     time.Time
}

// loadWorker sends its own share of the series round-robin, one request at
// a time, so every series' points leave in time order.
type loadWorker struct {
	gen         *loadGen
	series      []*loadSeries
	next        int
	rng         *rand.Rand
	perResource int // series per resource, to size a request's slices
}

// build makes a request of n datapoints: the next n series in the worker's
// rotation, one resource per run of series of the same host, timestamped
// now (strictly after the series' previous point, so a series that occurs
// twice in a request is still in order).
func (w *loadWorker) build(n int, now time.Time) pmetric.Metrics {
	md := pmetric.NewMetrics()
	ts := pcommon.NewTimestampFromTime(now)
	var a angles
	a.sinSwing, a.cosSwing = swingAt(now.Sub(w.gen.start))
	a.sinDay, a.cosDay = dayAt(now)
	curRes := -1
	var ms pmetric.MetricSlice
	gauges := make([]pmetric.NumberDataPointSlice, len(w.gen.metrics))
	have := make([]bool, len(w.gen.metrics))
	for range n {
		s := w.series[w.next]
		w.next = (w.next + 1) % len(w.series)
		if s.resource != curRes {
			curRes = s.resource
			rm := md.ResourceMetrics().AppendEmpty()
			attrs := rm.Resource().Attributes()
			attrs.EnsureCapacity(len(w.gen.resource) + 1)
			for _, a := range w.gen.resource {
				attrs.PutStr(a.Key, a.Value)
			}
			attrs.PutStr("host.name", w.gen.hostNames[s.resource])
			sm := rm.ScopeMetrics().AppendEmpty()
			sm.Scope().SetName(scopeName)
			ms = sm.Metrics()
			clear(have)
		}
		if !have[s.metric] {
			have[s.metric] = true
			m := ms.AppendEmpty()
			m.SetName(w.gen.metrics[s.metric])
			gauges[s.metric] = m.SetEmptyGauge().DataPoints()
			gauges[s.metric].EnsureCapacity(min(n, w.perResource))
		}
		dp := gauges[s.metric].AppendEmpty()
		dp.Attributes().PutStr("series", s.id)
		t := ts
		if t <= s.last {
			t = s.last + 1
		}
		s.last = t
		dp.SetTimestamp(t)
		dp.SetDoubleValue(s.value(w.rng, a))
	}
	return md
}

// newLoadWorkers spreads the series over the workers: series i goes to
// worker i mod workers. Series i is on host i / perResource and metric
// i mod metrics, has the attribute series=i and the shape i mod the number
// of shapes.
func newLoadWorkers(lo loadOptions, resource []attribute, start time.Time) []*loadWorker {
	gen := &loadGen{resource: resource, start: start}
	for h := 0; h*lo.perResource < lo.series; h++ {
		gen.hostNames = append(gen.hostNames, fmt.Sprintf("load-%05d", h))
	}
	if lo.metrics == 1 {
		gen.metrics = []string{"load.gauge"}
	} else {
		for m := range lo.metrics {
			gen.metrics = append(gen.metrics, "load.gauge."+strconv.Itoa(m))
		}
	}
	setup := rand.New(rand.NewPCG(lo.seed, 0))
	workers := make([]*loadWorker, lo.workers)
	for w := range workers {
		workers[w] = &loadWorker{gen: gen, rng: rand.New(rand.NewPCG(lo.seed, uint64(w)+1)), perResource: lo.perResource}
	}
	for i := range lo.series {
		// Levels spread over three decades, noise a few percent of the
		// level: series of very different scales, as in a real gateway.
		level := math.Pow(10, 3*setup.Float64())
		s := &loadSeries{
			resource: i / lo.perResource,
			metric:   i % lo.metrics,
			id:       strconv.Itoa(i),
			shape:    shapeNoisy,
			level:    level,
			noise:    level * (0.01 + 0.04*setup.Float64()),
		}
		s.sinPhase, s.cosPhase = math.Sincos(2 * math.Pi * setup.Float64())
		if len(lo.shapes) > 0 {
			s.shape = lo.shapes[i%len(lo.shapes)]
		}
		w := workers[i%lo.workers]
		w.series = append(w.series, s)
	}
	return workers
}

// loadStats are the counts of a load run, updated by every worker.
type loadStats struct {
	requests       atomic.Int64 // requests the endpoint answered with success
	failedRequests atomic.Int64 // requests that failed after their retries
	retries        atomic.Int64
	sent           atomic.Int64 // datapoints in successful requests
	rejected       atomic.Int64 // of those, rejected by partial success
	failed         atomic.Int64 // datapoints in failed requests: not counted as delivered

	mu      sync.Mutex
	lastErr string
}

func (st *loadStats) noteError(err error) {
	st.mu.Lock()
	st.lastErr = err.Error()
	st.mu.Unlock()
}

// loadReport is what a load run did; printed as text on stderr and, with
// --json, as JSON on stdout.
type loadReport struct {
	Endpoint           string  `json:"endpoint"`
	Series             int     `json:"series"`
	Workers            int     `json:"workers"`
	Batch              int     `json:"batch"`
	TargetRate         float64 `json:"target_rate"` // datapoints/s; 0 = as fast as possible
	ElapsedSeconds     float64 `json:"elapsed_seconds"`
	Requests           int64   `json:"requests"`
	FailedRequests     int64   `json:"failed_requests"`
	Retries            int64   `json:"retries"`
	DataPointsSent     int64   `json:"datapoints_sent"`
	DataPointsRejected int64   `json:"datapoints_rejected"`
	DataPointsAccepted int64   `json:"datapoints_accepted"`
	DataPointsFailed   int64   `json:"datapoints_failed"`
	// AcceptedPerSecond is the achieved rate: accepted datapoints over the
	// whole run.
	AcceptedPerSecond float64 `json:"datapoints_per_second"`
	LastError         string  `json:"last_error,omitempty"`
}

func (r loadReport) String() string {
	s := fmt.Sprintf("%d series, %d workers, batch %d: accepted %d datapoints (%.0f dp/s) in %d requests over %.1fs; %d failed requests (%d datapoints not delivered), %d retries, %d datapoints rejected",
		r.Series, r.Workers, r.Batch, r.DataPointsAccepted, r.AcceptedPerSecond, r.Requests, r.ElapsedSeconds,
		r.FailedRequests, r.DataPointsFailed, r.Retries, r.DataPointsRejected)
	if r.LastError != "" {
		s += "; last error: " + r.LastError
	}
	return s
}

func (st *loadStats) report(o options, elapsed time.Duration) loadReport {
	r := loadReport{
		Endpoint:           o.endpoint,
		Series:             o.loadOpts.series,
		Workers:            o.loadOpts.workers,
		Batch:              o.batch,
		TargetRate:         o.rate,
		ElapsedSeconds:     elapsed.Seconds(),
		Requests:           st.requests.Load(),
		FailedRequests:     st.failedRequests.Load(),
		Retries:            st.retries.Load(),
		DataPointsSent:     st.sent.Load(),
		DataPointsRejected: st.rejected.Load(),
		DataPointsFailed:   st.failed.Load(),
	}
	r.DataPointsAccepted = r.DataPointsSent - r.DataPointsRejected
	if elapsed > 0 {
		r.AcceptedPerSecond = float64(r.DataPointsAccepted) / elapsed.Seconds()
	}
	st.mu.Lock()
	r.LastError = st.lastErr
	st.mu.Unlock()
	return r
}

// failurePause keeps a worker whose requests fail at once (endpoint down)
// from spinning on the CPU the collector under test needs.
const failurePause = 100 * time.Millisecond

// run sends batches until the worker's quota (0 = none) is spent or
// stop is done. Requests already on the wire when stop fires are allowed to
// finish (with ctx), so that their outcome is known and counted.
func (w *loadWorker) run(ctx, stop context.Context, s *sender, st *loadStats, batch int, rate float64, quota int64) {
	p := pacer{rate: rate}
	var generated int64
	for quota == 0 || generated < quota {
		n := int64(batch)
		if quota > 0 {
			n = min(n, quota-generated)
		}
		// Due when its last point is due, as in the replay: the average
		// rate over the run then does not overshoot.
		if p.wait(stop, int(generated+n-1)) != nil || stop.Err() != nil {
			return
		}
		md := w.build(int(n), time.Now())
		generated += n
		rejected, retried := s.rejected, s.retried
		err := s.send(ctx, md)
		st.retries.Add(int64(s.retried - retried))
		if err != nil {
			st.failedRequests.Add(1)
			st.failed.Add(n)
			st.noteError(err)
			if sleep(stop, failurePause) != nil {
				return
			}
			continue
		}
		st.requests.Add(1)
		st.sent.Add(n)
		st.rejected.Add(s.rejected - rejected)
	}
}

// runLoad generates --load traffic and reports it. It fails only when
// nothing at all was accepted: a partly overloaded endpoint is a result,
// not an error.
func runLoad(ctx context.Context, o options, stdout, stderr io.Writer) error {
	lo := o.loadOpts
	conn, err := dial(ctx, o)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := pmetricotlp.NewGRPCClient(conn)

	start := time.Now()
	workers := newLoadWorkers(lo, o.resource, start)
	stop, cancel := ctx, context.CancelFunc(func() {})
	if lo.duration > 0 {
		stop, cancel = context.WithTimeout(ctx, lo.duration)
	}
	defer cancel()

	st := &loadStats{}
	var wg sync.WaitGroup
	for i, w := range workers {
		quota := int64(0)
		if lo.points > 0 {
			quota = lo.points / int64(len(workers))
			if int64(i) < lo.points%int64(len(workers)) {
				quota++
			}
			if quota == 0 {
				continue
			}
		}
		s := &sender{client: client, timeout: o.timeout, retries: o.retries, backoff: 100 * time.Millisecond, maxBackoff: 2 * time.Second}
		wg.Go(func() { w.run(ctx, stop, s, st, o.batch, o.rate/float64(len(workers)), quota) })
	}

	done := make(chan struct{})
	var progress sync.WaitGroup
	if !o.quiet {
		progress.Go(func() { reportProgress(done, st, start, lo.reportEvery, stderr) })
	}
	wg.Wait()
	close(done)
	progress.Wait()

	rep := st.report(o, time.Since(start))
	fmt.Fprintf(stderr, "iforest-replay --load: %s: %v\n", o.endpoint, rep)
	if lo.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	}
	if rep.DataPointsAccepted == 0 && rep.FailedRequests > 0 {
		return errors.New("the endpoint accepted no datapoint")
	}
	return nil
}

// reportProgress prints one line per interval: totals so far and the rate
// over the last interval (which shows a collector falling behind).
func reportProgress(done <-chan struct{}, st *loadStats, start time.Time, every time.Duration, w io.Writer) {
	t := time.NewTicker(every)
	defer t.Stop()
	var prevAccepted int64
	prev := start
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			accepted := st.sent.Load() - st.rejected.Load()
			rate := float64(accepted-prevAccepted) / now.Sub(prev).Seconds()
			fmt.Fprintf(w, "iforest-replay --load: %5.0fs: accepted %d datapoints (%.0f dp/s now), %d requests, %d failed\n",
				now.Sub(start).Seconds(), accepted, rate, st.requests.Load(), st.failedRequests.Load())
			prevAccepted, prev = accepted, now
		}
	}
}
