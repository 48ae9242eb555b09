package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

var (
	btBenchSeries = flag.Int("backtest.series", 1000, "series in BenchmarkBacktest's input")
	btBenchPoints = flag.Int("backtest.points", 1440, "points per series in BenchmarkBacktest's input")
	btBenchDir    = flag.String("backtest.dir", "", "keep BenchmarkBacktest's input files in this directory, and reuse them (default: a temporary directory)")
)

// BenchmarkBacktest runs a generated fleet (see fleet) through backtest
// with the default config and writes the report, per input format. The
// issue's scale: -backtest.series 10000 -backtest.points 1440 -benchtime 1x.
func BenchmarkBacktest(b *testing.B) {
	f := newFleet(*btBenchSeries, *btBenchPoints)
	dir := *btBenchDir
	if dir == "" {
		dir = b.TempDir()
	}
	require.NoError(b, os.MkdirAll(dir, 0o755))
	for _, format := range []struct {
		name, ext string
		write     func(testing.TB, io.Writer)
	}{{"otlp", "jsonl", f.writeOTLP}, {"prometheus", "json", f.writePrometheus}} {
		b.Run(format.name, func(b *testing.B) {
			name := fmt.Sprintf("fleet-%dx%d.%s", f.series, f.points, format.ext)
			path := filepath.Join(dir, name)
			if _, err := os.Stat(path); err != nil {
				writeFile(b, dir, name, format.write)
			}
			cfg, err := backtestConfig("")
			require.NoError(b, err)
			var size int64
			for b.Loop() {
				bt := backtest{Inputs: []string{path}, Config: cfg, ConfigName: "defaults", Options: btOptions{Format: formatAuto, MaxPlots: 20000}}
				res, err := bt.run(context.Background())
				require.NoError(b, err)
				require.Equal(b, int64(f.series*f.points), res.Summary.Points)
				var cw countingWriter
				require.NoError(b, writeReport(&cw, res))
				size = cw.n
			}
			b.ReportMetric(float64(f.series*f.points)*float64(b.N)/b.Elapsed().Seconds(), "dp/s")
			b.ReportMetric(float64(size), "report-bytes")
		})
	}
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}
