package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/otel-iforest/iforest/internal/csvrow"
	"github.com/otel-iforest/iforest/internal/scenario"
	iforestprocessor "github.com/otel-iforest/iforest/processor"
)

// seedCPUCSV renders the seed scenario (one day of minute CPU samples with
// three spikes) in the layout of seed_cpu.csv.
func seedCPUCSV(seed uint64) string {
	var b strings.Builder
	b.WriteString("timestamp,value,injected_label\n")
	for _, r := range scenario.SeedCPU(seed, nil) {
		label := 0
		if r.Anomaly {
			label = 1
		}
		fmt.Fprintf(&b, "%s,%s,%d\n", r.Time.Format(csvrow.TimeLayout), strconv.FormatFloat(r.Value, 'g', -1, 64), label)
	}
	return b.String()
}

// csvBatches are a CSV's rows as replay feeds them.
func csvBatches(t testing.TB, data string) []pmetric.Metrics {
	rows, err := newCSVRows(strings.NewReader(data), replayOptions{})
	require.NoError(t, err)
	var out []pmetric.Metrics
	for {
		row, err := rows.next()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		out = append(out, row.md)
	}
}

// csvToOTLP writes a CSV's rows as OTLP JSON lines, one row a line, with the
// same resource, scope and metrics replay gives them.
func csvToOTLP(t testing.TB, data string) string {
	var m pmetric.JSONMarshaler
	var b strings.Builder
	for _, md := range csvBatches(t, data) {
		line, err := m.MarshalMetrics(md)
		require.NoError(t, err)
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// csvToRecords writes a CSV's rows as the file exporter's length-prefixed
// records: protobuf or JSON, each zstd-compressed or not.
func csvToRecords(t testing.TB, data string, proto, compress bool) string {
	enc, err := zstd.NewWriter(nil)
	require.NoError(t, err)
	defer enc.Close()
	var b bytes.Buffer
	for _, md := range csvBatches(t, data) {
		var rec []byte
		if proto {
			rec, err = (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
		} else {
			rec, err = (&pmetric.JSONMarshaler{}).MarshalMetrics(md)
		}
		require.NoError(t, err)
		if compress {
			rec = enc.EncodeAll(rec, nil)
		}
		require.NoError(t, binary.Write(&b, binary.BigEndian, uint32(len(rec))))
		b.Write(rec)
	}
	return b.String()
}

func zstdStream(t testing.TB, data string) string {
	var b bytes.Buffer
	zw, err := zstd.NewWriter(&b)
	require.NoError(t, err)
	_, err = zw.Write([]byte(data))
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return b.String()
}

// csvToPrometheus writes a CSV's columns as a query_range answer, one
// series per column with job = replay's service.name, so that the series
// are the same as replay's.
func csvToPrometheus(t testing.TB, data string) string {
	recs, err := csv.NewReader(strings.NewReader(data)).ReadAll()
	require.NoError(t, err)
	var series []string
	for j, col := range recs[0][1:] {
		var vals []string
		for _, r := range recs[1:] {
			ts, err := csvrow.ParseTime(r[0])
			require.NoError(t, err)
			if v, ok := csvrow.ParseValue(r[j+1]); ok {
				vals = append(vals, fmt.Sprintf(`[%d,"%s"]`, ts.Unix(), strconv.FormatFloat(v, 'g', -1, 64)))
			}
		}
		series = append(series, fmt.Sprintf(`{"metric":{"__name__":%q,"job":%q},"values":[%s]}`, col, replayServiceName, strings.Join(vals, ",")))
	}
	return `{"status":"success","data":{"resultType":"matrix","result":[` + strings.Join(series, ",") + "]}}"
}

func writeTemp(t testing.TB, dir, name, data string) string {
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, []byte(data), 0o644))
	return path
}

func gzipped(t testing.TB, data string) string {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, err := zw.Write([]byte(data))
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return b.String()
}

// btVerdict is one row of --verdicts output.
type btVerdict struct {
	Value, Score, Detected, Incident, ID string
}

// runBT backtests inputs with cfg and returns the result and every
// datapoint's verdict by series name (metric{attributes}) and time.
func runBT(t testing.TB, cfg *iforestprocessor.Config, o btOptions, inputs ...string) (*btResult, map[string]map[string]btVerdict) {
	var buf bytes.Buffer
	vw, err := newBTVerdictWriter(&buf)
	require.NoError(t, err)
	o.Verdicts = vw
	if o.Format == "" {
		o.Format = formatAuto
	}
	if o.MaxPlots == 0 {
		o.MaxPlots = 1000
	}
	bt := backtest{Inputs: inputs, Config: cfg, ConfigName: "test", Options: o}
	res, err := bt.run(context.Background())
	require.NoError(t, err)
	recs, err := csv.NewReader(&buf).ReadAll()
	require.NoError(t, err)
	require.Equal(t, btVerdictHeader, recs[0])
	out := map[string]map[string]btVerdict{}
	for _, r := range recs[1:] {
		name := r[0]
		if r[1] != "" {
			name += "{" + r[1] + "}"
		}
		if out[name] == nil {
			out[name] = map[string]btVerdict{}
		}
		ts := r[3]
		for n := 2; ; n++ { // a series' time repeated: ts#2, ts#3, ...
			if _, dup := out[name][ts]; !dup {
				break
			}
			ts = r[3] + "#" + strconv.Itoa(n)
		}
		out[name][ts] = btVerdict{Value: r[4], Score: r[5], Detected: r[6], Incident: r[7], ID: r[8]}
	}
	return res, out
}

// replayVerdicts are replay's verdicts of the columns scored on their own,
// as runBT gives them.
func replayVerdicts(t testing.TB, cfg *iforestprocessor.Config, data string) map[string]map[string]btVerdict {
	tab := replayString(t, cfg, data)
	out := map[string]map[string]btVerdict{}
	for k, col := range tab.Univariate {
		out[col] = map[string]btVerdict{}
		for _, r := range tab.Rows {
			v := r.Columns[k]
			bv := btVerdict{}
			if v.Scored {
				bv.Score, bv.Detected = strconv.FormatFloat(v.Score, 'g', -1, 64), strconv.FormatBool(v.Detected)
			}
			out[col][fmtNanos(r.Time.UnixNano())] = bv
		}
	}
	return out
}

// sameVerdicts checks that got has want's score and flag at every point.
func sameVerdicts(t *testing.T, what string, want, got map[string]map[string]btVerdict) {
	t.Helper()
	require.Equal(t, len(want), len(got), "%s: series", what)
	for name, pts := range want {
		require.Len(t, got[name], len(pts), "%s: points of %s", what, name)
		diff := 0
		for ts, w := range pts {
			g := got[name][ts]
			if w.Score != g.Score || w.Detected != g.Detected {
				if diff++; diff <= 5 {
					t.Errorf("%s: %s at %s: replay score %q detected %q, backtest %q %q", what, name, ts, w.Score, w.Detected, g.Score, g.Detected)
				}
			}
		}
		assert.Zero(t, diff, "%s: points of %s whose verdict differs", what, name)
	}
}

// TestBacktestFormatsGiveReplaysVerdicts: the seed scenario as CSV, as
// OTLP JSON lines (plain and gzip), and as a Prometheus answer gets exactly
// replay's verdicts, fed by one worker or by several.
func TestBacktestFormatsGiveReplaysVerdicts(t *testing.T) {
	cfg, err := backtestConfig("")
	require.NoError(t, err)
	data := seedCPUCSV(11)
	want := replayVerdicts(t, cfg, data)
	require.Contains(t, want, "value")
	flagged := 0
	for _, pts := range want {
		for _, v := range pts {
			if v.Detected == "true" {
				flagged++
			}
		}
	}
	require.Greater(t, flagged, 10, "the spikes are flagged")

	dir := t.TempDir()
	otlp := csvToOTLP(t, data)
	inputs := map[string]string{
		"csv":           writeTemp(t, dir, "seed.csv", data),
		"otlp":          writeTemp(t, dir, "seed.jsonl", otlp),
		"otlp gzip":     writeTemp(t, dir, "seed.jsonl.gz", gzipped(t, otlp)),
		"otlp zstd":     writeTemp(t, dir, "seed.jsonl.zst", zstdStream(t, otlp)),
		"zstd records":  writeTemp(t, dir, "seed.zrec", csvToRecords(t, data, false, true)),
		"proto records": writeTemp(t, dir, "seed.pb", csvToRecords(t, data, true, false)),
		"prometheus":    writeTemp(t, dir, "seed.json", csvToPrometheus(t, data)),
		"prometheus gz": writeTemp(t, dir, "prom.gz", gzipped(t, csvToPrometheus(t, data))),
	}
	for name, path := range inputs {
		for _, workers := range []int{1, 3} {
			res, got := runBT(t, cfg, btOptions{Workers: workers}, path)
			sameVerdicts(t, fmt.Sprintf("%s, %d workers", name, workers), want, got)
			assert.Zero(t, res.Summary.InputProblems, "%s: %v", name, res.Summary.Problems)
			assert.Equal(t, int64(flagged), res.Summary.Flagged, name)
		}
	}
}

// TestBacktestModels: with a multivariate model the input's batches reach
// the processor as they are, and a Prometheus answer is merged by time, so
// the model's verdicts are replay's.
func TestBacktestModels(t *testing.T) {
	cfg, err := backtestConfig(seedExample)
	require.NoError(t, err)
	require.True(t, ordered(cfg))
	data := seedCPUMemCSV(scenario.SeedCPUMem(5)[:400])
	tab := replayString(t, cfg, data, "cpu_usage", "memory_usage")
	k := tab.model("machine")
	flagged := 0
	for _, r := range tab.Rows {
		if r.Models[k].Detected {
			flagged++
		}
	}
	require.Greater(t, flagged, 0)

	// Only the model's two metrics, so that the answer and the CSV hold the
	// same series.
	var two strings.Builder
	recs, err := csv.NewReader(strings.NewReader(data)).ReadAll()
	require.NoError(t, err)
	for _, r := range recs {
		two.WriteString(strings.Join(r[:3], ",") + "\n")
	}
	dir := t.TempDir()
	for name, path := range map[string]string{
		"csv":        writeTemp(t, dir, "m.csv", two.String()),
		"otlp":       writeTemp(t, dir, "m.jsonl", csvToOTLP(t, two.String())),
		"prometheus": writeTemp(t, dir, "m.json", csvToPrometheus(t, two.String())),
	} {
		_, got := runBT(t, cfg, btOptions{}, path)
		for _, metric := range []string{"cpu_usage", "memory_usage"} {
			require.Len(t, got[metric], len(tab.Rows), "%s: %s", name, metric)
			diff := 0
			for _, r := range tab.Rows {
				w, g := r.Models[k], got[metric][fmtNanos(r.Time.UnixNano())]
				wantScore := ""
				if w.Scored {
					wantScore = strconv.FormatFloat(w.Score, 'g', -1, 64)
				}
				if g.Score != wantScore || w.Scored && g.Detected != strconv.FormatBool(w.Detected) {
					diff++
				}
			}
			assert.Zero(t, diff, "%s: %s: rows whose model verdict differs from replay's", name, metric)
		}
	}
}

// TestBacktestSummary: the summary counts what the verdicts say, and the
// processor's self-telemetry agrees.
func TestBacktestSummary(t *testing.T) {
	cfg, err := backtestConfig("")
	require.NoError(t, err)
	f := newFleet(40, 600)
	dir := t.TempDir()
	path := writeFile(t, dir, "fleet.jsonl", f.writeOTLP)
	res, got := runBT(t, cfg, btOptions{}, path)
	s := res.Summary
	var points, scored, flagged, incidents int64
	for _, pts := range got {
		for _, v := range pts {
			points++
			if v.Score != "" {
				scored++
			}
			if v.Detected == "true" {
				flagged++
			}
			if v.Incident == "started" {
				incidents++
			}
		}
	}
	assert.Equal(t, 40, s.Series)
	assert.Equal(t, int64(40*600), s.Points)
	assert.Equal(t, points, s.Points)
	assert.Equal(t, scored, s.Scored)
	assert.Equal(t, flagged, s.Flagged)
	assert.Equal(t, incidents, s.Incidents)
	assert.Equal(t, "2024-03-01T00:00:00Z", s.From)
	assert.Equal(t, "2024-03-01T09:59:00Z", s.To)
	assert.InDelta(t, 40*600.0/1440, s.SeriesDays, 0.001, "600 minutes a series")
	assert.InEpsilon(t, float64(incidents)/(40*600.0/1440), s.IncidentsPerSeriesDay, 1e-3)

	// The top series are those with the most incidents.
	most := map[string]int64{}
	for name, pts := range got {
		for _, v := range pts {
			if v.Incident == "started" {
				most[name]++
			}
		}
	}
	require.Len(t, s.Top, btTopSeries)
	for i, tp := range s.Top {
		assert.Equal(t, most[tp.Series], tp.Incidents, tp.Series)
		for name, n := range most {
			if !slices.ContainsFunc(s.Top, func(x btTop) bool { return x.Series == name }) {
				assert.GreaterOrEqual(t, tp.Incidents, n, "top %d %s against %s", i, tp.Series, name)
			}
		}
	}
	// The spiked series (0 and 37) each have their spike flagged, in an
	// incident (on 37 a dip three points before it opened one already).
	for _, sr := range []int{0, 37} {
		at := fmtNanos(f.time(f.spikeAt(sr)).UnixNano())
		v := got[fmt.Sprintf("load.gauge{series=%d}", sr)][at]
		assert.Equal(t, "true", v.Detected, "series %d: the spike is flagged", sr)
		assert.NotEmpty(t, v.ID, "series %d: the spike is in an incident", sr)
	}

	tel := map[string]float64{}
	for _, c := range s.Telemetry {
		tel[c.Metric+"{"+c.attrString()+"}"] = c.Value
	}
	assert.Equal(t, float64(scored), tel["otelcol_processor_iforest_datapoints_scored{}"])
	assert.Equal(t, float64(flagged), tel["otelcol_processor_iforest_anomalies{}"])
	assert.Equal(t, float64(40*cfg.Warmup), tel["otelcol_processor_iforest_datapoints_skipped{reason=warmup}"])
	assert.Equal(t, float64(40), tel["otelcol_processor_iforest_series_active{}"])

	// --json prints the same numbers.
	var js bytes.Buffer
	require.NoError(t, json.NewEncoder(&js).Encode(s))
	var m map[string]any
	require.NoError(t, json.Unmarshal(js.Bytes(), &m))
	for k, v := range map[string]float64{"series": 40, "points": float64(points), "flagged": float64(flagged), "incidents": float64(incidents), "incidents_per_series_day": s.IncidentsPerSeriesDay} {
		assert.Equal(t, v, m[k], k)
	}
}

// strictCompare backtests fleet f, as a Prometheus answer, under the
// defaults and compared with threshold 0.9 ("strict.yaml").
func strictCompare(t testing.TB, f fleet, maxPlots int) *btResult {
	a, err := backtestConfig("")
	require.NoError(t, err)
	dir := t.TempDir()
	b, err := backtestConfig(writeTemp(t, dir, "strict.yaml", "threshold: 0.99999\n"))
	require.NoError(t, err)
	path := writeFile(t, dir, "fleet.json", f.writePrometheus)
	bt := backtest{Inputs: []string{path}, Config: a, ConfigName: "defaults", Compare: b, CompareName: "strict.yaml",
		Options: btOptions{Format: formatAuto, MaxPlots: maxPlots}}
	res, err := bt.run(context.Background())
	require.NoError(t, err)
	return res
}

// TestBacktestCompare: a stricter threshold flags less; the summary says
// which series changed.
func TestBacktestCompare(t *testing.T) {
	res := strictCompare(t, newFleet(40, 600), 100)
	s := res.Summary
	require.NotNil(t, s.Compare)
	assert.Equal(t, s.Points, s.Compare.Points)
	assert.Less(t, s.Compare.Flagged, s.Flagged)
	assert.LessOrEqual(t, s.Compare.Incidents, s.Incidents)
	assert.Positive(t, s.Compare.ChangedSeries)
	n := 0
	for i := range res.Table.list {
		if res.A.stats[i].flagged != res.B.stats[i].flagged || res.A.stats[i].incidents != res.B.stats[i].incidents {
			n++
		}
	}
	assert.Equal(t, n, s.Compare.ChangedSeries)
	for _, c := range s.Compare.Changed {
		assert.True(t, c.FlaggedA != c.FlaggedB || c.IncidentsA != c.IncidentsB, "%+v", c)
	}

	var html bytes.Buffer
	require.NoError(t, writeReport(&html, res))
	page := html.String()
	assert.Contains(t, page, `id="sum-b-flagged">`+fmtCount(s.Compare.Flagged)+"<")
	assert.Contains(t, page, fmt.Sprintf("Series that change: %d of 40", s.Compare.ChangedSeries))
}

// TestBacktestBadInput: each kind of bad input is reported with its file
// and line or series, and everything else in the run is backtested.
func TestBacktestBadInput(t *testing.T) {
	cfg, err := backtestConfig("")
	require.NoError(t, err)
	dir := t.TempDir()
	good := writeFile(t, dir, "good.json", newFleet(3, 100).writePrometheus)
	const goodPoints = 300

	otlpLines := strings.Split(strings.TrimSpace(csvToOTLP(t, "timestamp,a\n2024-01-01 00:00:00,1\n2024-01-01 00:01:00,2\n2024-01-01 00:02:00,3\n2024-01-01 00:03:00,4\n")), "\n")
	require.Len(t, otlpLines, 4)
	nonNumeric := strings.Replace(otlpLines[2], `"asDouble":3`, `"asDouble":"three"`, 1)
	require.NotEqual(t, otlpLines[2], nonNumeric)

	for _, tc := range []struct {
		name, file, data string
		points           int64 // of the bad file that still count
		want             []string
	}{{
		name: "truncated OTLP", file: "cut.jsonl",
		data:   strings.Join(otlpLines[:3], "\n") + "\n" + otlpLines[3][:len(otlpLines[3])/2],
		points: 3, want: []string{"cut.jsonl:4: truncated"},
	}, {
		name: "a line that is not OTLP", file: "junk.jsonl",
		data:   otlpLines[0] + "\nhello\n" + strings.Join(otlpLines[1:], "\n") + "\n",
		points: 4, want: []string{"junk.jsonl:2: not an OTLP JSON metrics request"},
	}, {
		name: "non-numeric OTLP value", file: "nan.jsonl",
		data:   strings.Join([]string{otlpLines[0], otlpLines[1], nonNumeric, otlpLines[3]}, "\n") + "\n",
		points: 3, want: []string{"nan.jsonl:3: not an OTLP JSON metrics request"},
	}, {
		name: "Prometheus error", file: "err.json",
		data: `{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:1: parse error"}`,
		want: []string{`err.json: the Prometheus answer has status "error" (bad_data): invalid parameter "query"`},
	}, {
		name: "truncated Prometheus", file: "cut.json",
		data:   `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"a"},"values":[[1704067200,"1"],[1704067260,"2"]]},{"metric":{"__name__":"b"},"values":[[1704067200,"1"],[17040`,
		points: 2, want: []string{"cut.json: not a complete Prometheus answer (byte ", `after series 1 a{}): unexpected EOF`},
	}, {
		name: "non-numeric Prometheus value", file: "abc.json",
		data:   `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"a","job":"j"},"values":[[1704067200,"1"],[1704067260,"abc"],[1704067320,"NaN"]]}]}}`,
		points: 2, want: []string{`abc.json: series a{job="j"}: value "abc" at 2024-01-01T00:01:00Z is not a number (1 such samples; left out)`},
	}, {
		name: "instant vector", file: "vector.json",
		data: `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"a"},"value":[1704067200,"1"]}]}}`,
		want: []string{`vector.json: resultType "vector": backtest reads range queries`},
	}, {
		name: "non-numeric CSV cells", file: "cells.csv",
		data:   "timestamp,a,b\n2024-01-01 00:00:00,1,2\n2024-01-01 00:01:00,x,3\n2024-01-01 00:02:00,y,4\n2024-01-01 00:03:00,5,\n",
		points: 5, want: []string{`cells.csv:3: column "a": "x" is not a finite number (2 cells of this column in all; they make no datapoint)`},
	}, {
		name: "bad CSV row", file: "row.csv",
		data:   "timestamp,a\n2024-01-01 00:00:00,1\nnoon,2\n2024-01-01 00:02:00,3\n",
		points: 2, want: []string{`row.csv:3: bad timestamp "noon"`},
	}, {
		name: "unsorted points", file: "unsorted.json",
		data: `{"status":"success","data":{"resultType":"matrix","result":[` +
			`{"metric":{"__name__":"a"},"values":[[1704067200,"1"],[1704067320,"3"],[1704067260,"2"],[1704067260,"2"],[1704067380,"4"]]},` +
			`{"metric":{"__name__":"b"},"values":[[1704067200,"1"],[1704067260,"2"]]}]}}`,
		points: 7, want: []string{"unsorted.json: series a: 2 of its 5 points are not after the series' previous point (first: 2024-01-01T00:01:00Z after 2024-01-01T00:02:00Z)"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			bad := writeTemp(t, dir, tc.file, tc.data)
			res, _ := runBT(t, cfg, btOptions{}, good, bad)
			s := res.Summary
			require.Positive(t, s.InputProblems)
			all := strings.Join(s.Problems, "\n")
			for _, w := range tc.want {
				assert.Contains(t, all, w)
			}
			assert.Equal(t, goodPoints+tc.points, s.Points, "the good file and the good part of the bad one are backtested")
		})
	}
}

// TestBacktestUnsortedCountsOutOfOrder: points out of order go to the
// processor as they are, which skips them as out_of_order.
func TestBacktestUnsortedCountsOutOfOrder(t *testing.T) {
	cfg, err := backtestConfig("")
	require.NoError(t, err)
	var vals []string
	for i := range 60 {
		j := i
		if i == 50 {
			j = 40 // back in time
		}
		vals = append(vals, fmt.Sprintf(`[%d,"%d"]`, 1704067200+60*j, 10+i%3))
	}
	path := writeTemp(t, t.TempDir(), "u.json", `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"a"},"values":[`+strings.Join(vals, ",")+`]}]}}`)
	res, _ := runBT(t, cfg, btOptions{}, path)
	require.Equal(t, 1, res.Summary.InputProblems, "%v", res.Summary.Problems)
	found := false
	for _, c := range res.Summary.Telemetry {
		if c.Metric == "otelcol_processor_iforest_datapoints_skipped" && c.Attributes["reason"] == "out_of_order" {
			found = true
			assert.Equal(t, 1.0, c.Value)
		}
	}
	assert.True(t, found, "out_of_order in the self-telemetry: %v", res.Summary.Telemetry)
}

// TestBacktestStripsOwnAttributes: data captured after an iforest processor
// carries verdicts; they are removed, so they neither split series nor read
// as this run's verdicts.
func TestBacktestStripsOwnAttributes(t *testing.T) {
	cfg, err := backtestConfig("")
	require.NoError(t, err)
	data := seedCPUCSV(3)
	otlp := csvToOTLP(t, data)
	stale := strings.ReplaceAll(otlp, `"asDouble"`, `"attributes":[{"key":"anomaly.incident","value":{"stringValue":"started"}},{"key":"anomaly.detected","value":{"boolValue":true}}],"asDouble"`)
	require.NotEqual(t, otlp, stale)
	dir := t.TempDir()
	_, want := runBT(t, cfg, btOptions{}, writeTemp(t, dir, "clean.jsonl", otlp))
	res, got := runBT(t, cfg, btOptions{}, writeTemp(t, dir, "stale.jsonl", stale))
	assert.Equal(t, want, got)
	assert.Zero(t, res.Summary.InputProblems, "a capture after an iforest processor is not bad input")
	require.Len(t, res.Summary.Notes, 1)
	assert.Contains(t, res.Summary.Notes[0], "2880 datapoints came with anomaly.* attributes")
	var html bytes.Buffer
	require.NoError(t, writeReport(&html, res))
	assert.Contains(t, html.String(), "2880 datapoints came with anomaly.* attributes")
}

func TestBacktestTraceIsBounded(t *testing.T) {
	var tr btTrace
	lo, hi := 1e9, -1e9
	var maxScore float32
	for i := range 100000 {
		v := float64(i%977) - float64(i%13)*5
		lo, hi = min(lo, v), max(hi, v)
		score := float64(i%1000) / 1000
		maxScore = max(maxScore, float32(score))
		tr.add(int64(i), v, score)
		require.LessOrEqual(t, len(tr.b), 2*btTraceBuckets)
	}
	bs := tr.buckets()
	require.LessOrEqual(t, len(bs), btTraceBuckets)
	require.Greater(t, len(bs), btTraceBuckets/2)
	var n uint32
	blo, bhi := float32(1e9), float32(-1e9)
	var bscore float32
	for i, b := range bs {
		n += b.n
		blo, bhi, bscore = min(blo, b.lo), max(bhi, b.hi), max(bscore, b.score)
		if i > 0 {
			assert.Greater(t, b.t, bs[i-1].t)
		}
	}
	assert.Equal(t, uint32(100000), n, "every point is in a bucket")
	assert.Equal(t, float32(lo), blo)
	assert.Equal(t, float32(hi), bhi)
	assert.Equal(t, maxScore, bscore)
	assert.Equal(t, int64(0), bs[0].t)

	enc := encodeTrace(bs, 0, 99999, lo, hi)
	assert.Len(t, enc, 7*len(bs))
}

func TestBacktestConfigFromCollectorConfig(t *testing.T) {
	dir := t.TempDir()
	full := writeTemp(t, dir, "collector.yaml", `receivers:
  otlp:
    protocols:
      grpc:
processors:
  batch: {}
  iforest/key:
    threshold: 0.9
    output:
      mode: both
exporters:
  nop:
service:
  pipelines:
    metrics:
      receivers: [otlp]
      processors: [batch, iforest/key]
      exporters: [nop]
`)
	cfg, err := backtestConfig(full)
	require.NoError(t, err)
	assert.Equal(t, 0.9, cfg.Threshold)
	assert.Equal(t, iforestprocessor.OutputAttributes, cfg.Output.Mode, "both is run as attributes")

	two := writeTemp(t, dir, "two.yaml", "processors:\n  iforest/a: {}\n  iforest/b: {}\n")
	_, err = backtestConfig(two)
	assert.ErrorContains(t, err, "2 iforest processors (iforest/a, iforest/b)")
	none := writeTemp(t, dir, "none.yaml", "processors:\n  batch: {}\n")
	_, err = backtestConfig(none)
	assert.ErrorContains(t, err, "no iforest processor")
	bad := writeTemp(t, dir, "bad.yaml", "processors:\n  iforest:\n    threshold: 2\n")
	_, err = backtestConfig(bad)
	assert.ErrorContains(t, err, "threshold")
}

// TestBacktestCommand runs the command: report, JSON and verdicts written,
// exit error when the input had problems, usage errors.
func TestBacktestCommand(t *testing.T) {
	dir := t.TempDir()
	in := writeTemp(t, dir, "seed.csv", seedCPUCSV(4))
	out := filepath.Join(dir, "r.html")
	verdicts := filepath.Join(dir, "v.csv")
	stdout := captureStdout(t, func() {
		require.NoError(t, runBacktestCmd([]string{"--out", out, in, "--json", "--verdicts", verdicts}))
	})
	var sum map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout), &sum))
	assert.Equal(t, 2.0, sum["series"])
	assert.Equal(t, 2880.0, sum["points"])
	html, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Contains(t, string(html), `id="sum-a-points">2,880<`)
	v, err := os.ReadFile(verdicts)
	require.NoError(t, err)
	assert.Equal(t, 2881, strings.Count(string(v), "\n"))

	bad := writeTemp(t, dir, "bad.json", `{"status":"error","errorType":"timeout","error":"query timed out"}`)
	stdout = captureStdout(t, func() {
		err := runBacktestCmd([]string{"--json", "--out", out, in, bad})
		assert.ErrorContains(t, err, "1 input problems")
	})
	require.NoError(t, json.Unmarshal([]byte(stdout), &sum))
	assert.Equal(t, 2880.0, sum["points"], "the good input is backtested")
	assert.Equal(t, 1.0, sum["input_problems"])

	for _, args := range [][]string{
		{"--json"},
		{in},
		{"--json", "--format", "xml", in},
		{"--json", "--max-plots", "-1", in},
	} {
		var ue usageError
		assert.ErrorAs(t, runBacktestCmd(args), &ue, "%q", args)
	}
}

// captureStdout returns what fn writes to os.Stdout.
func captureStdout(t *testing.T, fn func()) string {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	old := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	defer func() { os.Stdout = old }()
	fn()
	require.NoError(t, w.Close())
	os.Stdout = old
	return <-done
}

// TestProgressStartsAgain: backtest --compare runs the progress bar twice;
// each run counts from zero, and a count past the total stays at 100%.
func TestProgressStartsAgain(t *testing.T) {
	var out bytes.Buffer
	p := &progress{w: &out, tty: true, name: "backtest", unit: "bytes"}
	for range 2 {
		p.start(1, 100)
		p.addRows(150)
		p.fileDone("f", 100, time.Second)
		p.finish()
	}
	assert.Contains(t, out.String(), "100%  1/1 files  150/100 bytes")
	assert.NotContains(t, out.String(), "2/1 files")
	assert.NotContains(t, out.String(), "300/100 bytes")
	assert.Equal(t, 2, strings.Count(out.String(), "backtest: 1 files, 100 bytes in"))
}

func TestBacktestNumberFormats(t *testing.T) {
	for x, want := range map[float64]string{0: "0", 3.512: "3.512", 10000: "10,000", 1234567.25: "1,234,567.25", -0.5: "-0.5", -1500: "-1,500"} {
		assert.Equal(t, want, fmtFloat(x))
	}
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 14400000: "14,400,000", -1234: "-1,234"} {
		assert.Equal(t, want, fmtCount(n))
	}
}

// What the numbers do not show is said: series left unscored at
// max_series (they would look clean), and a storage setting that an
// offline run does without.
func TestBacktestNotesUnscoredSeriesAndStorage(t *testing.T) {
	cfg, err := backtestConfig("")
	require.NoError(t, err)
	cfg.MaxSeries = 1
	st := component.MustNewID("file_storage")
	cfg.Storage = &st
	dir := t.TempDir()
	// Two series: value and injected_label.
	res, _ := runBT(t, cfg, btOptions{}, writeTemp(t, dir, "seed.csv", seedCPUCSV(3)))
	require.Len(t, res.Summary.Notes, 2, "%q", res.Summary.Notes)
	assert.Regexp(t, `^test: [1-9]\d* datapoints were not scored: their series found no model at max_series \(1\)`, res.Summary.Notes[0])
	assert.Equal(t, "test: storage (file_storage) is not used: the backtest starts from empty models", res.Summary.Notes[1])
	assert.Positive(t, res.Summary.Scored, "the other series is scored")

	cfg.MaxSeries, cfg.Storage = 0, nil
	res, _ = runBT(t, cfg, btOptions{}, writeTemp(t, dir, "seed.csv", seedCPUCSV(3)))
	assert.Empty(t, res.Summary.Notes)
}
