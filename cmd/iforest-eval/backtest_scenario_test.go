package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// fleet is a generated backtest input: series of one gauge (load.gauge,
// attribute series=N) on hosts of perHost series each, one point a minute,
// noise around each series' own level, and on every spikeEvery-th series a
// spike of spikeLen points far above it.
type fleet struct {
	series, points, perHost int
	spikeEvery, spikeLen    int
	start                   time.Time
}

func newFleet(series, points int) fleet {
	return fleet{series: series, points: points, perHost: 100, spikeEvery: 37, spikeLen: 5,
		start: time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)}
}

// spikeAt is the first point of series s's spike, or -1.
func (f fleet) spikeAt(s int) int {
	if f.spikeEvery == 0 || s%f.spikeEvery != 0 || f.points < 100 {
		return -1
	}
	return f.points/2 + (s*7)%(f.points/4)
}

func (f fleet) time(i int) time.Time { return f.start.Add(time.Duration(i) * time.Minute) }

// value is series s's point i: a level of its own, a slow swing, and
// noise from a hash of (s, i), so any point can be made in any order.
func (f fleet) value(s, i int) float64 {
	u1 := float64(mix64(uint64(s)<<32|uint64(i))>>11+1) / (1 << 53)
	u2 := float64(mix64(uint64(s)<<32|uint64(i)|1<<63)>>11) / (1 << 53)
	noise := math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
	level := 20 + float64(s%60)
	v := level + 3*math.Sin(float64(i)/180) + 2*noise
	if at := f.spikeAt(s); at >= 0 && i >= at && i < at+f.spikeLen {
		v = level + 45 + float64(i-at)
	}
	return math.Round(v*1000) / 1000
}

func (f fleet) host(s int) string { return "host-" + strconv.Itoa(s/f.perHost) }

// writeOTLP writes the fleet as the file exporter would: one line per
// minute holding every series' point, a resource per host.
func (f fleet) writeOTLP(t testing.TB, w io.Writer) {
	var m pmetric.JSONMarshaler
	bw := bufio.NewWriterSize(w, 1<<20)
	for i := 0; i < f.points; i++ {
		b, err := m.MarshalMetrics(f.minute(i))
		require.NoError(t, err)
		_, err = bw.Write(append(b, '\n'))
		require.NoError(t, err)
	}
	require.NoError(t, bw.Flush())
}

// minute is every series' point i as one batch.
func (f fleet) minute(i int) pmetric.Metrics {
	md := pmetric.NewMetrics()
	ts := pcommon.NewTimestampFromTime(f.time(i))
	var dps pmetric.NumberDataPointSlice
	for s := 0; s < f.series; s++ {
		if s%f.perHost == 0 {
			rm := md.ResourceMetrics().AppendEmpty()
			rm.Resource().Attributes().PutStr("host.name", f.host(s))
			rm.Resource().Attributes().PutStr("service.name", "fleet")
			sm := rm.ScopeMetrics().AppendEmpty()
			sm.Scope().SetName("fleet.scraper")
			m := sm.Metrics().AppendEmpty()
			m.SetName("load.gauge")
			dps = m.SetEmptyGauge().DataPoints()
		}
		dp := dps.AppendEmpty()
		dp.Attributes().PutStr("series", strconv.Itoa(s))
		dp.SetTimestamp(ts)
		dp.SetDoubleValue(f.value(s, i))
	}
	return md
}

// writePrometheus writes the fleet as a query_range answer.
func (f fleet) writePrometheus(t testing.TB, w io.Writer) {
	bw := bufio.NewWriterSize(w, 1<<20)
	fmt.Fprint(bw, `{"status":"success","data":{"resultType":"matrix","result":[`)
	for s := 0; s < f.series; s++ {
		if s > 0 {
			bw.WriteByte(',')
		}
		fmt.Fprintf(bw, `{"metric":{"__name__":"load_gauge","job":"fleet","instance":%q,"series":"%d"},"values":[`, f.host(s), s)
		for i := 0; i < f.points; i++ {
			if i > 0 {
				bw.WriteByte(',')
			}
			fmt.Fprintf(bw, `[%d,"%s"]`, f.time(i).Unix(), strconv.FormatFloat(f.value(s, i), 'g', -1, 64))
		}
		bw.WriteString("]}")
	}
	bw.WriteString("]}}\n")
	require.NoError(t, bw.Flush())
}

// writeFile writes a fleet input with fn into dir/name.
func writeFile(t testing.TB, dir, name string, fn func(testing.TB, io.Writer)) string {
	path := dir + "/" + name
	fh, err := os.Create(path)
	require.NoError(t, err)
	fn(t, fh)
	require.NoError(t, fh.Close())
	return path
}
