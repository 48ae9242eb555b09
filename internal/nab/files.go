// Package nab reads the files of the Numenta Anomaly Benchmark (NAB) — data
// series, the combined label windows and detectors' results — and scores
// detections with NAB's rules: probation, scaled-sigmoid window credit,
// false-positive costs relative to the preceding window, three application
// profiles and a corpus-wide threshold sweep. It knows nothing of OTel.
package nab

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// TimeLayout is NAB's timestamp format. Parsing also accepts a fractional
// second (the label files carry microseconds).
const TimeLayout = "2006-01-02 15:04:05"

// ParseTime parses a NAB timestamp as UTC.
func ParseTime(s string) (time.Time, error) {
	return time.ParseInLocation(TimeLayout, strings.TrimSpace(s), time.UTC)
}

// FormatTime formats t as NAB does in data and results files.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// Window is a labelled anomaly window; both ends are inclusive.
type Window struct {
	Start, End time.Time
}

// Windows maps a data file's corpus name, "<category>/<file>.csv", to its
// windows in time order.
type Windows map[string][]Window

// LoadWindows reads a combined_windows.json file.
func LoadWindows(path string) (Windows, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	w, err := ReadWindows(fh)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return w, nil
}

// ReadWindows decodes the combined_windows.json format: an object mapping
// corpus names to lists of [start, end] timestamp pairs. Windows are sorted
// and must not overlap.
func ReadWindows(r io.Reader) (Windows, error) {
	var raw map[string][][]string
	if err := json.NewDecoder(r).Decode(&raw); err != nil {
		return nil, err
	}
	out := make(Windows, len(raw))
	for name, pairs := range raw {
		ws := make([]Window, 0, len(pairs))
		for k, p := range pairs {
			if len(p) != 2 {
				return nil, fmt.Errorf("%s: window %d has %d timestamps, want 2", name, k, len(p))
			}
			start, err := ParseTime(p[0])
			if err != nil {
				return nil, fmt.Errorf("%s: window %d: %w", name, k, err)
			}
			end, err := ParseTime(p[1])
			if err != nil {
				return nil, fmt.Errorf("%s: window %d: %w", name, k, err)
			}
			if end.Before(start) {
				return nil, fmt.Errorf("%s: window %d ends before it starts", name, k)
			}
			ws = append(ws, Window{Start: start, End: end})
		}
		slices.SortFunc(ws, func(a, b Window) int { return a.Start.Compare(b.Start) })
		for k := 1; k < len(ws); k++ {
			if !ws[k].Start.After(ws[k-1].End) {
				return nil, fmt.Errorf("%s: windows %d and %d overlap", name, k-1, k)
			}
		}
		out[name] = ws
	}
	return out, nil
}

// Series is one NAB data file, or the rows of a results file.
type Series struct {
	Times  []time.Time
	Values []float64
	// Scores and Labels are only set for results files; Labels is nil when
	// the file has no label column.
	Scores []float64
	Labels []bool
	// Detected is the detector's own verdict per row, when it gives one
	// (the processor's anomaly.detected); nil otherwise.
	Detected []bool
}

// Len is the number of rows.
func (s *Series) Len() int { return len(s.Times) }

// LoadSeries reads a data file (timestamp,value) or a results file
// (timestamp,value,anomaly_score[,label,...]) by its header.
func LoadSeries(path string) (*Series, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	s, err := ReadSeries(fh)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// ReadSeries reads NAB CSV: the columns are found by name, timestamp and
// value are required, anomaly_score and label are read when present, any
// others are ignored. Timestamps are kept as they come: NAB's data has a
// few repeated and out-of-order ones, and rows, not times, are what count.
func ReadSeries(r io.Reader) (*Series, error) {
	cr := csv.NewReader(bufio.NewReader(r))
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		if err == io.EOF {
			return nil, errors.New("empty file")
		}
		return nil, fmt.Errorf("reading header: %w", err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.TrimSpace(h)] = i
	}
	tsCol, okT := col["timestamp"]
	valCol, okV := col["value"]
	if !okT || !okV {
		return nil, fmt.Errorf("header %q: want timestamp and value columns", strings.Join(header, ","))
	}
	scoreCol, hasScore := col["anomaly_score"]
	labelCol, hasLabel := col["label"]
	detCol, hasDet := col["detected"]

	s := &Series{}
	if hasScore {
		s.Scores = []float64{}
	}
	if hasLabel {
		s.Labels = []bool{}
	}
	if hasDet {
		s.Detected = []bool{}
	}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err // csv errors carry the line number
		}
		t, err := ParseTime(rec[tsCol])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		v, err := parseNumber(rec[valCol])
		if err != nil {
			return nil, fmt.Errorf("line %d: value: %w", line, err)
		}
		s.Times = append(s.Times, t)
		s.Values = append(s.Values, v)
		if hasScore {
			sc, err := parseNumber(rec[scoreCol])
			if err != nil {
				return nil, fmt.Errorf("line %d: anomaly_score: %w", line, err)
			}
			s.Scores = append(s.Scores, sc)
		}
		if hasLabel {
			l, err := parseNumber(rec[labelCol])
			if err != nil {
				return nil, fmt.Errorf("line %d: label: %w", line, err)
			}
			s.Labels = append(s.Labels, l != 0)
		}
		if hasDet {
			d, err := parseNumber(rec[detCol])
			if err != nil {
				return nil, fmt.Errorf("line %d: detected: %w", line, err)
			}
			s.Detected = append(s.Detected, d != 0)
		}
	}
	if s.Len() == 0 {
		return nil, errors.New("no data rows")
	}
	return s, nil
}

func parseNumber(f string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
	if err != nil {
		return 0, err
	}
	return v, nil
}

// WriteResults writes s in NAB's results format,
// timestamp,value,anomaly_score,label, one line per row, and a detected
// column (0/1) when s.Detected is set. s.Scores must be set; a nil
// s.Labels writes label 0 throughout.
func WriteResults(w io.Writer, s *Series) error {
	if len(s.Scores) != s.Len() || len(s.Values) != s.Len() || (s.Labels != nil && len(s.Labels) != s.Len()) ||
		(s.Detected != nil && len(s.Detected) != s.Len()) {
		return errors.New("write results: columns of different lengths")
	}
	bw := bufio.NewWriter(w)
	if s.Detected != nil {
		bw.WriteString("timestamp,value,anomaly_score,label,detected\n")
	} else {
		bw.WriteString("timestamp,value,anomaly_score,label\n")
	}
	var buf []byte
	for i, t := range s.Times {
		buf = t.UTC().AppendFormat(buf[:0], TimeLayout)
		buf = append(buf, ',')
		buf = strconv.AppendFloat(buf, s.Values[i], 'g', -1, 64)
		buf = append(buf, ',')
		buf = strconv.AppendFloat(buf, s.Scores[i], 'g', -1, 64)
		if s.Labels != nil && s.Labels[i] {
			buf = append(buf, ",1"...)
		} else {
			buf = append(buf, ",0"...)
		}
		switch {
		case s.Detected == nil:
		case s.Detected[i]:
			buf = append(buf, ",1"...)
		default:
			buf = append(buf, ",0"...)
		}
		bw.Write(append(buf, '\n'))
	}
	return bw.Flush()
}

// Labels marks the rows of an n-row file that lie in one of spans.
func Labels(n int, spans []Span) []bool {
	labels := make([]bool, n)
	for _, sp := range spans {
		for i := max(sp.First, 0); i <= sp.Last && i < n; i++ {
			labels[i] = true
		}
	}
	return labels
}
