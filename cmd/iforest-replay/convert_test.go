package main

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func readAll(t *testing.T, csvText, tsCol string, mappings []mapping) ([]row, error) {
	t.Helper()
	cr, err := newCSVReader(strings.NewReader(csvText), tsCol, mappings)
	if err != nil {
		return nil, err
	}
	var rows []row
	for {
		r, err := cr.next()
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		if err != nil {
			return rows, err
		}
		rows = append(rows, r)
	}
}

func TestCSVReader(t *testing.T) {
	const data = "\ufefftimestamp, value,other\n" +
		"2014-04-10 00:00:00,1.5,x\n" +
		"\n" +
		"2014-04-10 00:05:00,,y\n"
	rows, err := readAll(t, data, "timestamp", []mapping{{"value", "m"}, {"other", "o"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Fatalf("got %d rows, want 2", len(rows))
	}
	if !rows[0].Time.Equal(mustTime(t, "2014-04-10T00:00:00Z")) || rows[0].Cells[0] != "1.5" || rows[0].Cells[1] != "x" {
		t.Errorf("row 0 = %+v", rows[0])
	}
	if rows[1].Line != 4 || rows[1].Cells[0] != "" || rows[1].Cells[1] != "y" {
		t.Errorf("row 1 = %+v", rows[1])
	}
}

func TestCSVReaderErrors(t *testing.T) {
	m := []mapping{{"value", "m"}}
	for name, tc := range map[string]struct {
		data, tsCol string
		want        string
	}{
		"empty":          {"", "timestamp", "no header"},
		"no ts column":   {"time,value\n", "timestamp", `no "timestamp" column`},
		"no value col":   {"timestamp,v\n", "timestamp", `no "value" column`},
		"bad timestamp":  {"timestamp,value\n2014-04-10 00:00:00,1\nnope,2\n", "timestamp", "line 3: bad timestamp"},
		"short row":      {"timestamp,value\n2014-04-10 00:00:00\n", "timestamp", "line 2: 1 fields"},
		"custom ts name": {"ts,value\n2014-04-10 00:00:00,1\n", "timestamp", `no "timestamp" column`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := readAll(t, tc.data, tc.tsCol, m)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	if rows, err := readAll(t, "ts,value\n2014-04-10 00:00:00,1\n", "ts", m); err != nil || len(rows) != 1 {
		t.Fatalf("custom timestamp column: %v, %d rows", err, len(rows))
	}
}

type point struct {
	metric string
	ts     time.Time
	value  float64
}

// points flattens md, checking the single-resource/single-scope shape.
func points(t *testing.T, md pmetric.Metrics) (map[string]string, []point) {
	t.Helper()
	if md.ResourceMetrics().Len() != 1 {
		t.Fatalf("%d resources, want 1", md.ResourceMetrics().Len())
	}
	rm := md.ResourceMetrics().At(0)
	res := map[string]string{}
	rm.Resource().Attributes().Range(func(k string, v pcommon.Value) bool {
		res[k] = v.AsString()
		return true
	})
	if rm.ScopeMetrics().Len() != 1 {
		t.Fatalf("%d scopes, want 1", rm.ScopeMetrics().Len())
	}
	sm := rm.ScopeMetrics().At(0)
	if sm.Scope().Name() != scopeName {
		t.Errorf("scope %q", sm.Scope().Name())
	}
	var out []point
	for i := 0; i < sm.Metrics().Len(); i++ {
		m := sm.Metrics().At(i)
		if m.Type() != pmetric.MetricTypeGauge {
			t.Fatalf("metric %s is %v, want gauge", m.Name(), m.Type())
		}
		for j := 0; j < m.Gauge().DataPoints().Len(); j++ {
			dp := m.Gauge().DataPoints().At(j)
			if dp.ValueType() != pmetric.NumberDataPointValueTypeDouble {
				t.Fatalf("value type %v", dp.ValueType())
			}
			if dp.Attributes().Len() != 0 || dp.StartTimestamp() != 0 {
				t.Errorf("unexpected datapoint attributes/start time: %v %v", dp.Attributes().AsRaw(), dp.StartTimestamp())
			}
			out = append(out, point{m.Name(), dp.Timestamp().AsTime().UTC(), dp.DoubleValue()})
		}
	}
	return res, out
}

func TestRowsToMetrics(t *testing.T) {
	t0 := mustTime(t, "2014-04-10T00:00:00Z")
	rows := []row{
		{Time: t0, Cells: []string{"1", "10"}},
		{Time: t0.Add(5 * time.Minute), Cells: []string{"", "20"}},
		{Time: t0.Add(10 * time.Minute), Cells: []string{"3.5", "n/a"}},
	}
	mappings := []mapping{{"a", "metric.a"}, {"b", "metric.b"}}
	c := rowsToMetrics(rows, mappings, []attribute{{"service.name", "svc"}, {"host.name", "h"}}, scopeName)
	if c.DataPoints != 4 || c.Skipped != 2 {
		t.Fatalf("DataPoints=%d Skipped=%d, want 4 and 2", c.DataPoints, c.Skipped)
	}
	if got := c.Metrics.DataPointCount(); got != 4 {
		t.Fatalf("DataPointCount = %d", got)
	}
	res, pts := points(t, c.Metrics)
	if len(res) != 2 || res["service.name"] != "svc" || res["host.name"] != "h" {
		t.Errorf("resource = %v", res)
	}
	want := []point{
		{"metric.a", t0, 1},
		{"metric.a", t0.Add(10 * time.Minute), 3.5},
		{"metric.b", t0, 10},
		{"metric.b", t0.Add(5 * time.Minute), 20},
	}
	if len(pts) != len(want) {
		t.Fatalf("points = %v, want %v", pts, want)
	}
	for i := range want {
		if pts[i].metric != want[i].metric || !pts[i].ts.Equal(want[i].ts) || pts[i].value != want[i].value {
			t.Errorf("point %d = %+v, want %+v", i, pts[i], want[i])
		}
	}
}

func TestRowsToMetricsAllSkipped(t *testing.T) {
	rows := []row{{Time: time.Unix(0, 0), Cells: []string{"", "x"}}}
	c := rowsToMetrics(rows, []mapping{{"a", "a"}, {"b", "b"}}, nil, scopeName)
	if c.DataPoints != 0 || c.Skipped != 2 {
		t.Fatalf("DataPoints=%d Skipped=%d", c.DataPoints, c.Skipped)
	}
	if n := c.Metrics.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().Len(); n != 0 {
		t.Errorf("%d metrics, want none for a metric without datapoints", n)
	}
}

func TestParseColumnsAndResource(t *testing.T) {
	m, err := parseColumns("a=metric.a, b = metric.b ,c")
	if err != nil {
		t.Fatal(err)
	}
	want := []mapping{{"a", "metric.a"}, {"b", "metric.b"}, {"c", "c"}}
	if len(m) != len(want) {
		t.Fatalf("got %v", m)
	}
	for i := range want {
		if m[i] != want[i] {
			t.Errorf("mapping %d = %v, want %v", i, m[i], want[i])
		}
	}
	for _, bad := range []string{"", ",", "=x", "a=", "a=m,b=m"} {
		if _, err := parseColumns(bad); err == nil {
			t.Errorf("parseColumns(%q): want error", bad)
		}
	}
	r, err := parseResource("service.name=x, host.name=h=1")
	if err != nil || len(r) != 2 || r[0] != (attribute{"service.name", "x"}) || r[1] != (attribute{"host.name", "h=1"}) {
		t.Errorf("parseResource = %v, %v", r, err)
	}
	if r, err := parseResource(""); err != nil || len(r) != 0 {
		t.Errorf("parseResource(\"\") = %v, %v", r, err)
	}
	if _, err := parseResource("novalue"); err == nil {
		t.Error("parseResource(novalue): want error")
	}
}

func TestParseFlags(t *testing.T) {
	var sink strings.Builder
	o, err := parseFlags([]string{"--file", "f.csv", "--metric", "nab.value"}, &sink)
	if err != nil {
		t.Fatal(err)
	}
	if o.endpoint != "127.0.0.1:4317" || o.batch != 1 || o.rate != 0 || len(o.mappings) != 1 ||
		o.mappings[0] != (mapping{"value", "nab.value"}) || len(o.resource) != 1 ||
		o.resource[0] != (attribute{"service.name", "iforest-replay"}) || o.scope != scopeName {
		t.Errorf("defaults: %+v", o)
	}
	if o, err := parseFlags([]string{"--file", "f.csv", "--metric", "m", "--scope", "my.scope"}, &sink); err != nil || o.scope != "my.scope" {
		t.Errorf("--scope: %+v, %v", o, err)
	}
	for _, args := range [][]string{
		{"--metric", "m"},
		{"--file", "f.csv"},
		{"--file", "f.csv", "--columns", "a=b", "--metric", "m"},
		{"--file", "f.csv", "--metric", "m", "--batch", "0"},
		{"--file", "f.csv", "--metric", "m", "--rate", "-1"},
		{"--file", "f.csv", "--metric", "m", "extra"},
	} {
		if _, err := parseFlags(args, &sink); err == nil {
			t.Errorf("parseFlags(%q): want error", args)
		}
	}
}

// --help prints the usage and exits 0; a bad flag exits 2. The usage states
// one default per flag (a default is not repeated in the text).
func TestHelp(t *testing.T) {
	var usage strings.Builder
	_, err := parseFlags([]string{"--help"}, &usage)
	if !errors.Is(err, flag.ErrHelp) || exitCode(err) != 0 {
		t.Errorf("--help: err %v, exit code %d; want flag.ErrHelp, 0", err, exitCode(err))
	}
	_, batch, ok := strings.Cut(usage.String(), "-batch rows")
	batch, _, _ = strings.Cut(batch, "\n  -")
	if !ok || strings.Contains(batch, "default") {
		t.Errorf("usage of --batch: %q", batch)
	}
	_, err = parseFlags([]string{"--no-such-flag"}, io.Discard)
	if exitCode(err) != 2 {
		t.Errorf("bad flag: exit code %d, want 2", exitCode(err))
	}
	if exitCode(nil) != 0 {
		t.Error("success: exit code not 0")
	}
}
