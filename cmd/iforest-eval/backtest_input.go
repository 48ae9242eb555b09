package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// Input formats of a backtest.
const (
	formatAuto       = "auto"
	formatOTLP       = "otlp"
	formatPrometheus = "prometheus"
	formatCSV        = "csv"
)

// btSource reads one input file and hands its batches to emit in input
// order. Problems with parts of the input (a line, a cell, a series) go
// to problems and the rest is read; read returns an error only when the
// file cannot be read on.
type btSource struct {
	path      string
	format    string
	timeMajor bool // Prometheus: merge the series by time (ordered mode)
	emit      func(md pmetric.Metrics, where string)
	problems  *btProblems
	progress  *progress
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

func fmtNanos(ns int64) string {
	return time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
}

// countingReader tells the progress bar how much of the file was read.
type countingReader struct {
	r io.Reader
	p *progress
}

func (c countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.p.addRows(n)
	return n, err
}

func (s *btSource) read() error {
	fh, err := os.Open(s.path)
	if err != nil {
		return err
	}
	defer fh.Close()
	r := bufio.NewReaderSize(countingReader{r: fh, p: s.progress}, 1<<20)
	magic, _ := r.Peek(8)
	switch {
	case bytes.HasPrefix(magic, gzipMagic):
		gz, err := gzip.NewReader(r)
		if err != nil {
			return err
		}
		defer gz.Close()
		r = bufio.NewReaderSize(gz, 1<<20)
	case bytes.HasPrefix(magic, zstdMagic):
		zr, err := zstd.NewReader(r)
		if err != nil {
			return err
		}
		defer zr.Close()
		r = bufio.NewReaderSize(zr, 1<<20)
	case isFramed(magic) && (s.format == formatAuto || s.format == formatOTLP):
		return s.readFramed(r)
	}
	format := s.format
	if format == formatAuto {
		if format, err = sniffFormat(r); err != nil {
			return err
		}
	}
	switch format {
	case formatOTLP:
		return s.readOTLP(r)
	case formatPrometheus:
		return s.readPrometheus(r)
	case formatCSV:
		return s.readCSV(r)
	}
	return fmt.Errorf("unknown format %q", format)
}

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// isFramed tells the file exporter's length-prefixed records (format:
// proto, or compression: zstd without its native-compression gate) by a
// first record shorter than 16 MiB that is zstd, JSON or an OTLP request
// (protobuf field 1, bytes).
func isFramed(head []byte) bool {
	return len(head) == 8 && head[0] == 0 &&
		(bytes.Equal(head[4:], zstdMagic) || head[4] == '{' || head[4] == 0x0a)
}

// readFramed reads length-prefixed records: a 4-byte big-endian length,
// then that many bytes of an ExportMetricsServiceRequest, zstd-compressed
// or not, as JSON or protobuf.
func (s *btSource) readFramed(r io.Reader) error {
	zd, err := zstd.NewReader(nil)
	if err != nil {
		return err
	}
	defer zd.Close()
	var ju pmetric.JSONUnmarshaler
	var pu pmetric.ProtoUnmarshaler
	var head [4]byte
	var offset int64
	for record := 1; ; record++ {
		where := fmt.Sprintf("%s: record %d (byte %d)", s.path, record, offset)
		if _, err := io.ReadFull(r, head[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("record %d (byte %d): truncated length", record, offset)
		}
		n := binary.BigEndian.Uint32(head[:])
		if n > 1<<30 {
			return fmt.Errorf("record %d (byte %d): length %d: not a length-prefixed OTLP file", record, offset, n)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return fmt.Errorf("record %d (byte %d): truncated: the file ends inside it", record, offset)
		}
		offset += 4 + int64(n)
		if bytes.HasPrefix(b, zstdMagic) {
			if b, err = zd.DecodeAll(b, nil); err != nil {
				s.problems.add("%s: %v", where, err)
				continue
			}
		}
		var md pmetric.Metrics
		if t := bytes.TrimLeft(b, " \t\r\n"); len(t) > 0 && t[0] == '{' {
			md, err = ju.UnmarshalMetrics(b)
		} else {
			md, err = pu.UnmarshalMetrics(b)
		}
		if err != nil {
			s.problems.add("%s: not an OTLP metrics request: %v", where, err)
			continue
		}
		s.emit(md, where)
	}
}

// sniffFormat tells the formats apart by their start: OTLP JSON lines
// start with {"resourceMetrics", a Prometheus answer is another JSON
// object, anything else is taken for CSV.
func sniffFormat(r *bufio.Reader) (string, error) {
	head, err := r.Peek(64 << 10)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return "", err
	}
	trimmed := bytes.TrimLeft(head, " \t\r\n\ufeff")
	switch {
	case len(trimmed) == 0:
		return "", errors.New("empty file")
	case trimmed[0] != '{':
		return formatCSV, nil
	case bytes.Contains(head, []byte(`"resourceMetrics"`)):
		return formatOTLP, nil
	case bytes.Contains(head, []byte(`"status"`)) || bytes.Contains(head, []byte(`"resultType"`)):
		return formatPrometheus, nil
	}
	return "", errors.New("a JSON file that is neither OTLP JSON lines (file exporter) nor a Prometheus query_range answer; pass --format")
}

// readOTLP reads the file exporter's JSON: one ExportMetricsServiceRequest
// per line.
func (s *btSource) readOTLP(r *bufio.Reader) error {
	var u pmetric.JSONUnmarshaler
	for line := 1; ; line++ {
		b, err := r.ReadBytes('\n')
		if len(bytes.TrimSpace(b)) > 0 {
			md, uerr := u.UnmarshalMetrics(b)
			if uerr != nil {
				what := "not an OTLP JSON metrics request"
				if err != nil {
					what = "truncated: the file ends inside this line"
				}
				s.problems.add("%s:%d: %s: %v", s.path, line, what, uerr)
			} else {
				s.emit(md, s.path+":"+strconv.Itoa(line))
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("after line %d: %w", line, err)
		}
	}
}

// readCSV reads a CSV as replay does, each row one batch.
func (s *btSource) readCSV(r io.Reader) error {
	rows, err := newCSVRows(r, replayOptions{})
	if err != nil {
		return err
	}
	type badColumn struct {
		first string
		n     int
	}
	bad := map[string]*badColumn{} // the first bad cell of a column, and how many
	var order []string
	defer func() {
		for _, col := range order {
			b := bad[col]
			more := ""
			if b.n > 1 {
				more = fmt.Sprintf(" (%d cells of this column in all; they make no datapoint)", b.n)
			}
			s.problems.add("%s%s", b.first, more)
		}
	}()
	for {
		row, err := rows.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if re := (*rowError)(nil); errors.As(err, &re) {
			s.problems.add("%s:%d: %v", s.path, re.line, re.err)
			continue
		}
		if err != nil {
			return err
		}
		for _, msg := range row.bad {
			col, _, _ := strings.Cut(msg, ":")
			if bad[col] == nil {
				bad[col] = &badColumn{first: fmt.Sprintf("%s:%d: %s", s.path, row.line, msg)}
				order = append(order, col)
			}
			bad[col].n++
		}
		if row.points > 0 {
			s.emit(row.md, s.path+":"+strconv.Itoa(row.line))
		}
	}
}

// promSeries is one series of a Prometheus matrix.
type promSeries struct {
	Metric     map[string]string `json:"metric"`
	Values     []promSample      `json:"values"`
	Value      json.RawMessage   `json:"value"`      // instant vectors: not ours
	Histograms json.RawMessage   `json:"histograms"` // native histograms: not supported
}

// promSample is one [unix seconds, "value"] pair. A value that is not a
// number leaves bad set instead of failing the whole series.
type promSample struct {
	t   int64 // unix nanoseconds
	v   float64
	bad string
}

func (p *promSample) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) < 2 || b[0] != '[' || b[len(b)-1] != ']' {
		return fmt.Errorf("sample %.40s: want [time, \"value\"]", b)
	}
	ts, val, ok := bytes.Cut(b[1:len(b)-1], []byte(","))
	if !ok {
		return fmt.Errorf("sample %.40s: want [time, \"value\"]", b)
	}
	sec, err := strconv.ParseFloat(string(bytes.TrimSpace(ts)), 64)
	if err != nil {
		return fmt.Errorf("sample %.40s: time is not a number", b)
	}
	p.t = int64(math.Round(sec*1e3)) * int64(time.Millisecond) // Prometheus keeps milliseconds
	val = bytes.TrimSpace(val)
	if s, err := strconv.Unquote(string(val)); err == nil {
		val = []byte(s)
	}
	// NaN and ±Inf are values Prometheus returns; the processor counts
	// them (invalid_value). Anything else is not a number.
	if p.v, err = strconv.ParseFloat(string(val), 64); err != nil {
		p.bad = string(val)
	}
	return nil
}

// promName is a series as Prometheus writes it: name{k="v",...}.
func promName(labels map[string]string) string {
	var b strings.Builder
	b.WriteString(labels["__name__"])
	b.WriteByte('{')
	first := true
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if k == "__name__" {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		fmt.Fprintf(&b, "%s=%q", k, labels[k])
	}
	b.WriteByte('}')
	return b.String()
}

// promTemplate is a Prometheus series as OTLP: a gauge named __name__ whose
// datapoints carry the other labels, job and instance on the resource as
// service.name and service.instance.id (as the collector's Prometheus
// receiver maps them), in iforest-eval's scope.
func promTemplate(labels map[string]string) (pmetric.Metrics, pmetric.NumberDataPointSlice, pcommon.Map) {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	res := rm.Resource().Attributes()
	if v, ok := labels["job"]; ok {
		res.PutStr("service.name", v)
	}
	if v, ok := labels["instance"]; ok {
		res.PutStr("service.instance.id", v)
	}
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName(replayScopeName)
	m := sm.Metrics().AppendEmpty()
	m.SetName(labels["__name__"])
	attrs := pcommon.NewMap()
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if k != "__name__" && k != "job" && k != "instance" {
			attrs.PutStr(k, labels[k])
		}
	}
	return md, m.SetEmptyGauge().DataPoints(), attrs
}

// readPrometheus reads the JSON answer of /api/v1/query_range, streaming
// it series by series.
func (s *btSource) readPrometheus(r io.Reader) error {
	dec := json.NewDecoder(r)
	var status, errType, errMsg, resultType string
	var series int
	var last string // the last series read, for messages
	var kept []promKept
	where := func() string {
		if last == "" {
			return fmt.Sprintf("byte %d, before the first series", dec.InputOffset())
		}
		return fmt.Sprintf("byte %d, after series %d %s", dec.InputOffset(), series, last)
	}
	syntax := func(err error) error {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("not a complete Prometheus answer (%s): %w", where(), err)
	}
	if err := expectDelim(dec, '{'); err != nil {
		return syntax(err)
	}
	for dec.More() {
		key, err := stringToken(dec)
		if err != nil {
			return syntax(err)
		}
		switch key {
		case "status":
			status, err = stringToken(dec)
		case "errorType":
			errType, err = stringToken(dec)
		case "error":
			errMsg, err = stringToken(dec)
		case "data":
			err = s.readPromData(dec, &resultType, &series, &last, &kept)
		default:
			var skip json.RawMessage
			err = dec.Decode(&skip)
		}
		if err != nil {
			if _, isSyntax := err.(*json.SyntaxError); isSyntax || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return syntax(err)
			}
			return err
		}
	}
	if status != "success" {
		if status == "" {
			return errors.New("no \"status\": not a Prometheus API answer")
		}
		return fmt.Errorf("the Prometheus answer has status %q (%s): %s", status, errType, errMsg)
	}
	if s.timeMajor {
		s.emitByTime(kept)
	}
	return nil
}

// promKept is a series kept whole for the merge by time.
type promKept struct {
	samples []promSample
	tmpl    pmetric.Metrics // no datapoints
	attrs   pcommon.Map
}

func (s *btSource) readPromData(dec *json.Decoder, resultType *string, series *int, last *string, kept *[]promKept) error {
	if err := expectDelim(dec, '{'); err != nil {
		return err
	}
	for dec.More() {
		key, err := stringToken(dec)
		if err != nil {
			return err
		}
		switch key {
		case "resultType":
			if *resultType, err = stringToken(dec); err != nil {
				return err
			}
			if *resultType != "matrix" {
				return fmt.Errorf("resultType %q: backtest reads range queries (/api/v1/query_range), whose result is a matrix", *resultType)
			}
		case "result":
			if err := expectDelim(dec, '['); err != nil {
				return err
			}
			for dec.More() {
				var ps promSeries
				if err := dec.Decode(&ps); err != nil {
					return err
				}
				*series++
				name := promName(ps.Metric)
				*last = name
				switch {
				case len(ps.Value) > 0:
					return errors.New("an instant vector: backtest reads range queries (/api/v1/query_range)")
				case len(ps.Histograms) > 0:
					s.problems.add("%s: series %s: native histograms are not supported; its histogram samples were left out", s.path, name)
				}
				s.promSeries(name, ps, kept)
			}
			if _, err := dec.Token(); err != nil { // ]
				return err
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return err
			}
		}
	}
	_, err := dec.Token() // }
	return err
}

// promSeries checks a series' samples and emits them (or keeps them for
// the merge by time).
func (s *btSource) promSeries(name string, ps promSeries, kept *[]promKept) {
	good := ps.Values[:0]
	var bad int
	var firstBad promSample
	for _, p := range ps.Values {
		if p.bad != "" {
			if bad == 0 {
				firstBad = p
			}
			bad++
			continue
		}
		good = append(good, p)
	}
	if bad > 0 {
		s.problems.add("%s: series %s: value %q at %s is not a number (%d such samples; left out)", s.path, name, firstBad.bad, fmtNanos(firstBad.t), bad)
	}
	if len(good) == 0 {
		return
	}
	if s.timeMajor {
		md, _, attrs := promTemplate(ps.Metric)
		*kept = append(*kept, promKept{samples: good, tmpl: md, attrs: attrs})
		return
	}
	md, dps, attrs := promTemplate(ps.Metric)
	dps.EnsureCapacity(len(good))
	for _, p := range good {
		dp := dps.AppendEmpty()
		attrs.CopyTo(dp.Attributes())
		dp.SetTimestamp(pcommon.Timestamp(p.t))
		dp.SetDoubleValue(p.v)
	}
	s.emit(md, s.path) // messages about the series name it
}

// emitByTime feeds kept series as a scrape would: one batch per
// timestamp, holding every series' sample at that time.
func (s *btSource) emitByTime(kept []promKept) {
	var times []int64
	for _, k := range kept {
		for _, p := range k.samples {
			times = append(times, p.t)
		}
	}
	slices.Sort(times)
	times = slices.Compact(times)
	next := make([]int, len(kept))
	for _, t := range times {
		md := pmetric.NewMetrics()
		for i, k := range kept {
			for next[i] < len(k.samples) && k.samples[next[i]].t <= t {
				p := k.samples[next[i]]
				next[i]++
				rm := md.ResourceMetrics().AppendEmpty()
				k.tmpl.ResourceMetrics().At(0).CopyTo(rm)
				dp := rm.ScopeMetrics().At(0).Metrics().At(0).Gauge().DataPoints().AppendEmpty()
				k.attrs.CopyTo(dp.Attributes())
				dp.SetTimestamp(pcommon.Timestamp(p.t))
				dp.SetDoubleValue(p.v)
			}
		}
		if md.ResourceMetrics().Len() > 0 {
			s.emit(md, s.path+" at "+fmtNanos(t))
		}
	}
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("want %q, found %v", want, tok)
	}
	return nil
}

func stringToken(dec *json.Decoder) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", err
	}
	s, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("want a string, found %v", tok)
	}
	return s, nil
}
