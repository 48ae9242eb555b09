package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// sender exports pmetric.Metrics over OTLP gRPC, retrying requests the
// server did not process because it was unavailable (for example a collector
// that is still starting) with exponential backoff.
type sender struct {
	client     pmetricotlp.GRPCClient
	timeout    time.Duration // per attempt; 0 = none
	retries    int           // extra attempts after the first
	backoff    time.Duration // first wait; doubles up to maxBackoff
	maxBackoff time.Duration
	log        io.Writer // retry and partial-success notes; nil = silent

	requests int // requests accepted by the server
	retried  int // attempts that were retried
	rejected int64
}

// retryable reports whether the server did not process the request and says
// it may succeed later. DeadlineExceeded is not retried: the request may have
// been processed, and a replay must not deliver a point twice.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted:
		return true
	}
	return false
}

func (s *sender) send(ctx context.Context, md pmetric.Metrics) error {
	req := pmetricotlp.NewExportRequestFromMetrics(md)
	wait := s.backoff
	for attempt := 0; ; attempt++ {
		resp, err := s.export(ctx, req)
		if err == nil {
			s.requests++
			if ps := resp.PartialSuccess(); ps.RejectedDataPoints() > 0 {
				s.rejected += ps.RejectedDataPoints()
				if s.log != nil {
					fmt.Fprintf(s.log, "iforest-replay: server rejected %d datapoints: %s\n", ps.RejectedDataPoints(), ps.ErrorMessage())
				}
			}
			return nil
		}
		if !retryable(err) || attempt >= s.retries || ctx.Err() != nil {
			if attempt > 0 {
				return fmt.Errorf("export failed after %d attempts: %w", attempt+1, err)
			}
			return fmt.Errorf("export: %w", err)
		}
		s.retried++
		if s.log != nil {
			fmt.Fprintf(s.log, "iforest-replay: %v; retrying in %v\n", status.Convert(err).Message(), wait)
		}
		if err := sleep(ctx, wait); err != nil {
			return err
		}
		wait = min(2*wait, s.maxBackoff)
	}
}

func (s *sender) export(ctx context.Context, req pmetricotlp.ExportRequest) (pmetricotlp.ExportResponse, error) {
	if s.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.timeout)
		defer cancel()
	}
	return s.client.Export(ctx, req)
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// dial waits for the endpoint (up to --wait) and opens a plaintext gRPC
// connection to it.
func dial(ctx context.Context, o options) (*grpc.ClientConn, error) {
	if o.wait > 0 {
		if err := waitForEndpoint(ctx, o.endpoint, o.wait); err != nil {
			return nil, err
		}
	}
	conn, err := grpc.NewClient(o.endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", o.endpoint, err)
	}
	return conn, nil
}

// waitForEndpoint polls a TCP connection to addr until it succeeds or
// timeout passes.
func waitForEndpoint(ctx context.Context, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	for {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return conn.Close()
		}
		if sleep(ctx, 100*time.Millisecond) != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("endpoint %s not reachable within %v: %w", addr, timeout, err)
			}
			return ctx.Err()
		}
	}
}

// pacer spaces rows at rate rows per second from its start; rate 0 = no pacing.
type pacer struct {
	rate  float64
	start time.Time
}

// wait blocks until row index i (0-based) is due.
func (p *pacer) wait(ctx context.Context, i int) error {
	if p.rate <= 0 {
		return nil
	}
	if p.start.IsZero() {
		p.start = time.Now()
	}
	due := p.start.Add(time.Duration(float64(i) / p.rate * float64(time.Second)))
	return sleep(ctx, time.Until(due))
}
