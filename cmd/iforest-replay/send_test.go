package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// recorder is an OTLP metrics gRPC server that keeps every request it
// accepts. The first failFirst requests are refused with failCode.
type recorder struct {
	pmetricotlp.UnimplementedGRPCServer

	mu        sync.Mutex
	got       []pmetric.Metrics
	calls     int
	failFirst int
	failCode  codes.Code
	reject    int64 // reported as partial success on every accepted request
}

func (r *recorder) Export(_ context.Context, req pmetricotlp.ExportRequest) (pmetricotlp.ExportResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.calls <= r.failFirst {
		return pmetricotlp.NewExportResponse(), status.Error(r.failCode, "not ready")
	}
	md := pmetric.NewMetrics()
	req.Metrics().CopyTo(md)
	r.got = append(r.got, md)
	resp := pmetricotlp.NewExportResponse()
	if r.reject > 0 {
		resp.PartialSuccess().SetRejectedDataPoints(r.reject)
		resp.PartialSuccess().SetErrorMessage("too old")
	}
	return resp, nil
}

func (r *recorder) requests() []pmetric.Metrics {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]pmetric.Metrics(nil), r.got...)
}

func (r *recorder) callCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

// serve starts rec on lis and stops it when the test ends.
func serve(t *testing.T, lis net.Listener, rec *recorder) {
	t.Helper()
	srv := grpc.NewServer()
	pmetricotlp.RegisterGRPCServer(srv, rec)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
}

func startServer(t *testing.T, rec *recorder) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, lis, rec)
	return lis.Addr().String()
}

func writeCSV(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "data.csv")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const sampleCSV = `timestamp,value,cpu
2014-04-10 00:00:00,1,10
2014-04-10 00:05:00,2,
2014-04-10 00:10:00,x,30
2014-04-10 00:15:00,4,40
2014-04-10 00:20:00,5,50
`

// flatten returns the datapoints of all requests in arrival order.
func flatten(t *testing.T, reqs []pmetric.Metrics) []point {
	t.Helper()
	var out []point
	for _, md := range reqs {
		res, pts := points(t, md)
		if res["service.name"] == "" {
			t.Errorf("request without service.name: %v", res)
		}
		out = append(out, pts...)
	}
	return out
}

func runReplay(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stderr strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := run(ctx, args, &stderr)
	return stderr.String(), err
}

func TestReplaySingleColumnInOrder(t *testing.T) {
	rec := &recorder{}
	addr := startServer(t, rec)
	out, err := runReplay(t, "--endpoint", addr, "--file", writeCSV(t, sampleCSV), "--metric", "nab.value")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	reqs := rec.requests()
	if len(reqs) != 4 {
		t.Fatalf("%d requests, want 4 (one per row with a value)", len(reqs))
	}
	pts := flatten(t, reqs)
	t0 := mustTime(t, "2014-04-10T00:00:00Z")
	want := []point{
		{"nab.value", t0, 1},
		{"nab.value", t0.Add(5 * time.Minute), 2},
		{"nab.value", t0.Add(15 * time.Minute), 4},
		{"nab.value", t0.Add(20 * time.Minute), 5},
	}
	if len(pts) != len(want) {
		t.Fatalf("points %v, want %v", pts, want)
	}
	for i := range want {
		if pts[i].metric != want[i].metric || !pts[i].ts.Equal(want[i].ts) || pts[i].value != want[i].value {
			t.Errorf("point %d = %+v, want %+v", i, pts[i], want[i])
		}
	}
	for _, s := range []string{"read 5 rows", "sent 4 datapoints in 4 requests", "1 empty/non-numeric cells skipped", "0 retries"} {
		if !strings.Contains(out, s) {
			t.Errorf("report %q lacks %q", out, s)
		}
	}
}

func TestReplayColumnsBatchAndResource(t *testing.T) {
	rec := &recorder{}
	addr := startServer(t, rec)
	out, err := runReplay(t, "--endpoint", addr, "--file", writeCSV(t, sampleCSV),
		"--columns", "value=m.value,cpu=m.cpu", "--batch", "2", "--resource", "service.name=svc,host.name=h1")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	reqs := rec.requests()
	if len(reqs) != 3 { // rows 1-2, 3-4, 5
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	res, _ := points(t, reqs[0])
	if res["service.name"] != "svc" || res["host.name"] != "h1" {
		t.Errorf("resource = %v", res)
	}
	if n := reqs[0].DataPointCount(); n != 3 { // value 1,2 + cpu 10
		t.Errorf("first request has %d datapoints, want 3", n)
	}
	pts := flatten(t, reqs)
	if len(pts) != 8 {
		t.Fatalf("%d points, want 8: %v", len(pts), pts)
	}
	// Per metric, datapoints arrive in row order.
	last := map[string]time.Time{}
	for _, p := range pts {
		if !p.ts.After(last[p.metric]) {
			t.Errorf("%s out of order at %v", p.metric, p.ts)
		}
		last[p.metric] = p.ts
	}
	if !strings.Contains(out, "sent 8 datapoints in 3 requests (2 empty/non-numeric cells skipped") {
		t.Errorf("report %q", out)
	}
}

func TestReplayRetriesUnavailable(t *testing.T) {
	rec := &recorder{failFirst: 2, failCode: codes.Unavailable}
	addr := startServer(t, rec)
	out, err := runReplay(t, "--endpoint", addr, "--file", writeCSV(t, sampleCSV), "--metric", "m", "--batch", "10")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if got := len(rec.requests()); got != 1 {
		t.Fatalf("%d accepted requests, want 1", got)
	}
	if !strings.Contains(out, "2 retries") {
		t.Errorf("report %q lacks 2 retries", out)
	}
}

func TestReplayGivesUpAndDoesNotRetryOtherErrors(t *testing.T) {
	rec := &recorder{failFirst: 100, failCode: codes.Unavailable}
	addr := startServer(t, rec)
	out, err := runReplay(t, "--endpoint", addr, "--file", writeCSV(t, sampleCSV), "--metric", "m", "--retries", "1")
	if err == nil || !strings.Contains(err.Error(), "after 2 attempts") {
		t.Fatalf("err = %v, want failure after 2 attempts\n%s", err, out)
	}

	rec = &recorder{failFirst: 100, failCode: codes.InvalidArgument}
	addr = startServer(t, rec)
	out, err = runReplay(t, "--endpoint", addr, "--file", writeCSV(t, sampleCSV), "--metric", "m")
	if status.Code(unwrapAll(err)) != codes.InvalidArgument {
		t.Fatalf("err = %v, want InvalidArgument\n%s", err, out)
	}
	if n := rec.callCount(); n != 1 {
		t.Errorf("%d calls, want 1 (no retry)", n)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok || u.Unwrap() == nil {
			return err
		}
		err = u.Unwrap()
	}
}

func TestReplayPartialSuccessCounted(t *testing.T) {
	rec := &recorder{reject: 1}
	addr := startServer(t, rec)
	out, err := runReplay(t, "--endpoint", addr, "--file", writeCSV(t, sampleCSV), "--metric", "m", "--batch", "5")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "1 datapoints rejected") || !strings.Contains(out, "too old") {
		t.Errorf("report %q", out)
	}
}

func TestReplayWaitsForEndpoint(t *testing.T) {
	// Reserve a port, free it, and start the server on it a little later.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	rec := &recorder{}
	started := make(chan struct{})
	go func() {
		defer close(started)
		time.Sleep(300 * time.Millisecond)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("re-listen on %s: %v", addr, err)
			return
		}
		serve(t, l, rec)
	}()
	out, err := runReplay(t, "--endpoint", addr, "--file", writeCSV(t, sampleCSV), "--metric", "m", "--wait", "10s", "--retries", "0")
	<-started
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if got := len(rec.requests()); got != 4 {
		t.Errorf("%d requests, want 4", got)
	}
}

func TestReplayWaitTimesOut(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	_, err = runReplay(t, "--endpoint", addr, "--file", writeCSV(t, sampleCSV), "--metric", "m", "--wait", "300ms")
	if err == nil || !strings.Contains(err.Error(), "not reachable") {
		t.Fatalf("err = %v, want not reachable", err)
	}
}

func TestReplayRate(t *testing.T) {
	rec := &recorder{}
	addr := startServer(t, rec)
	start := time.Now()
	out, err := runReplay(t, "--endpoint", addr, "--file", writeCSV(t, sampleCSV), "--metric", "m", "--rate", "20")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	// 5 rows at 20 rows/s: the last is due 4/20 s = 200ms after the first.
	if d := time.Since(start); d < 190*time.Millisecond {
		t.Errorf("took %v, want >= 200ms at --rate 20", d)
	}
}
