package iforestprocessor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/pmetrictest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"gopkg.in/yaml.v3"

	"github.com/otel-iforest/iforest/internal/metadatatest"
)

// TestCases runs the stateful cases in testdata/cases (see the README
// there): each case's processor takes its stages' input batches in turn,
// and each stage's output and telemetry must match the files. With
// UPDATE_GOLDEN=1 the expected files are rewritten from what the
// processor does.
func TestCases(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("testdata", "cases", "*", "config.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, dirs)
	for _, c := range dirs {
		dir := filepath.Dir(c)
		t.Run(filepath.Base(dir), func(t *testing.T) { runCase(t, dir) })
	}
}

func runCase(t *testing.T, dir string) {
	cfg := createDefaultConfig().(*Config)
	cm, err := confmaptest.LoadConf(filepath.Join(dir, "config.yaml"))
	require.NoError(t, err)
	require.NoError(t, cm.Unmarshal(cfg))
	require.NoError(t, confmap.Validate(cfg))

	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	p, sink := newTestProcessor(t, cfg, metadatatest.NewSettings(tt))

	for stage := 1; ; stage++ {
		in := filepath.Join(dir, fmt.Sprintf("%d-in.yaml", stage))
		if _, err := os.Stat(in); os.IsNotExist(err) {
			require.Greater(t, stage, 1, "%s: no 1-in.yaml", dir)
			return
		}
		batches := readBatches(t, in)
		sink.Reset()
		for _, md := range batches {
			require.NoError(t, p.ConsumeMetrics(context.Background(), md))
		}
		got := sink.AllMetrics()
		require.Len(t, got, len(batches))
		for _, md := range got {
			roundVerdicts(md, cfg)
		}

		out := filepath.Join(dir, fmt.Sprintf("%d-out.yaml", stage))
		tel := filepath.Join(dir, fmt.Sprintf("%d-telemetry.txt", stage))
		gotTel := telemetryText(t, tt)
		if updateGolden {
			require.NoError(t, os.WriteFile(out, caseYAML(t, got), 0o600))
			require.NoError(t, os.WriteFile(tel, []byte(gotTel), 0o600))
		}
		want := readBatches(t, out)
		require.Len(t, want, len(got), "stage %d: %s has another number of batches", stage, out)
		for i := range want {
			require.NoError(t, pmetrictest.CompareMetrics(want[i], got[i]), "stage %d, batch %d: %s", stage, i+1, out)
		}
		wantTel, err := os.ReadFile(tel)
		require.NoError(t, err)
		assert.Equal(t, string(wantTel), gotTel, "stage %d: %s", stage, tel)
	}
}

// roundVerdicts rounds the numbers the verdicts carry (score, threshold,
// expected band, incident peak, score metrics) to 2 significant digits, so
// that the files state what a case is about and survive changes in the
// last digits of a score.
func roundVerdicts(md pmetric.Metrics, cfg *Config) {
	round := func(v float64) float64 {
		r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 2, 64), 64)
		return r
	}
	forEachAttrs(md, func(m pcommon.Map) {
		for k, v := range m.All() {
			if strings.HasPrefix(k, cfg.Output.AttributePrefix) && v.Type() == pcommon.ValueTypeDouble {
				v.SetDouble(round(v.Double()))
			}
		}
	})
	for _, rm := range md.ResourceMetrics().All() {
		for _, sm := range rm.ScopeMetrics().All() {
			for _, m := range sm.Metrics().All() {
				if m.Type() == pmetric.MetricTypeGauge && strings.HasSuffix(m.Name(), cfg.Output.MetricSuffix) {
					for _, dp := range m.Gauge().DataPoints().All() {
						dp.SetDoubleValue(round(dp.DoubleValue()))
					}
				}
			}
		}
	}
}

// telemetryText renders the processor's counters and gauges as
// `name{attribute=value} value` lines, sorted. batch_duration (time) and
// series_memory (bytes, which follow every change of a model's layout) are
// left out.
func telemetryText(t *testing.T, tt *componenttest.Telemetry) string {
	var rm metricdata.ResourceMetrics
	require.NoError(t, tt.Reader.Collect(context.Background(), &rm))
	var lines []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			name, ours := strings.CutPrefix(m.Name, "otelcol_processor_iforest_")
			if !ours || name == "batch_duration" || name == "series_memory" {
				continue // processorhelper's own, time and bytes
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			require.True(t, ok, "%s is not an int sum", m.Name)
			for _, dp := range sum.DataPoints {
				var attrs []string
				for _, kv := range dp.Attributes.ToSlice() {
					attrs = append(attrs, fmt.Sprintf("%s=%s", kv.Key, kv.Value.String()))
				}
				label := ""
				if len(attrs) > 0 {
					label = "{" + strings.Join(attrs, ",") + "}"
				}
				lines = append(lines, fmt.Sprintf("%s%s %d", m.Name, label, dp.Value))
			}
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n") + "\n"
}

// readBatches reads the batches of a case file: YAML documents of OTLP
// JSON, as pkg/golden reads one.
func readBatches(t *testing.T, file string) []pmetric.Metrics {
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var out []pmetric.Metrics
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, file)
		raw, err := json.Marshal(doc)
		require.NoError(t, err)
		md, err := (&pmetric.JSONUnmarshaler{}).UnmarshalMetrics(raw)
		require.NoError(t, err, "%s, document %d", file, len(out)+1)
		out = append(out, md)
	}
	require.NotEmpty(t, out, file)
	return out
}

// caseYAML writes batches in the form readBatches reads, compact enough to
// read: one document per batch, one line per datapoint with its time as a
// comment.
func caseYAML(t *testing.T, batches []pmetric.Metrics) []byte {
	var b bytes.Buffer
	b.WriteString("# Written by UPDATE_GOLDEN=1 go test ./processor -run TestCases; verdict numbers rounded to 2 digits.\n")
	for i, md := range batches {
		if i > 0 {
			b.WriteString("---\n")
		}
		raw, err := (&pmetric.JSONMarshaler{}).MarshalMetrics(md)
		require.NoError(t, err)
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		v, err := decodeOrdered(dec)
		require.NoError(t, err)
		writeBlock(&b, v, 0)
	}
	return b.Bytes()
}

// ordered is a JSON object with its keys in their order.
type ordered struct {
	keys []string
	vals map[string]any
}

func decodeOrdered(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		o := &ordered{vals: map[string]any{}}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return nil, err
			}
			v, err := decodeOrdered(dec)
			if err != nil {
				return nil, err
			}
			o.keys = append(o.keys, k.(string))
			o.vals[k.(string)] = v
		}
		_, err = dec.Token()
		return o, err
	case json.Delim('['):
		var l []any
		for dec.More() {
			v, err := decodeOrdered(dec)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		_, err = dec.Token()
		return l, err
	}
	return tok, nil
}

// writeBlock writes v in YAML block style; lists of datapoints and of
// attributes go one item per line in flow style.
func writeBlock(b *bytes.Buffer, v any, indent int) {
	pad := strings.Repeat("  ", indent)
	o, ok := v.(*ordered)
	if !ok {
		return
	}
	// A metric's data points after its type's other fields.
	keys := slices.Clone(o.keys)
	slices.SortStableFunc(keys, func(a, b string) int {
		return strings.Compare(boolKey(a == "dataPoints"), boolKey(b == "dataPoints"))
	})
	for _, k := range keys {
		switch x := o.vals[k].(type) {
		case *ordered:
			fmt.Fprintf(b, "%s%s:\n", pad, k)
			writeBlock(b, x, indent+1)
		case []any:
			fmt.Fprintf(b, "%s%s:\n", pad, k)
			for _, item := range x {
				if k == "dataPoints" || k == "attributes" || k == "quantileValues" {
					fmt.Fprintf(b, "%s  - %s%s\n", pad, flow(item), timeComment(item))
					continue
				}
				// A block mapping as a list item: the first key after the
				// dash, the others under it.
				var sub bytes.Buffer
				writeBlock(&sub, item, indent+2)
				s := sub.String()
				fmt.Fprintf(b, "%s  - %s", pad, strings.TrimPrefix(s, pad+"    "))
			}
		default:
			fmt.Fprintf(b, "%s%s: %s\n", pad, k, flow(x))
		}
	}
}

func boolKey(last bool) string {
	if last {
		return "1"
	}
	return "0"
}

// Datapoint keys in the order a reader wants them: when, the value, then
// the attributes.
var flowOrder = []string{"startTimeUnixNano", "timeUnixNano", "asDouble", "asInt", "count", "sum", "quantileValues", "quantile", "key", "value", "flags", "attributes"}

func flow(v any) string {
	switch x := v.(type) {
	case *ordered:
		keys := slices.Clone(x.keys)
		slices.SortStableFunc(keys, func(a, b string) int {
			ia, ib := slices.Index(flowOrder, a), slices.Index(flowOrder, b)
			if ia < 0 {
				ia = len(flowOrder) - 1 // unknown keys before the attributes
			}
			if ib < 0 {
				ib = len(flowOrder) - 1
			}
			return ia - ib
		})
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + ": " + flow(x.vals[k])
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = flow(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case string:
		if plainWord.MatchString(x) && !slices.Contains([]string{"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}, strings.ToLower(x)) {
			return x
		}
		q, _ := json.Marshal(x)
		return string(q)
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return "null"
	}
	return fmt.Sprint(v)
}

// plainWord is a string YAML reads back as the same string unquoted.
var plainWord = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_./-]*$`)

// timeComment shows a datapoint's time as a comment, for the reader.
func timeComment(v any) string {
	o, ok := v.(*ordered)
	if !ok {
		return ""
	}
	s, ok := o.vals["timeUnixNano"].(string)
	if !ok {
		return ""
	}
	ns, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ns == 0 {
		return ""
	}
	return "  # " + time.Unix(0, ns).UTC().Format(time.TimeOnly)
}
