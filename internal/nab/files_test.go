package nab

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func at(s string) time.Time {
	t, err := ParseTime(s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestReadWindows(t *testing.T) {
	ws, err := ReadWindows(strings.NewReader(`{
  "a/none.csv": [],
  "b/two.csv": [
    ["2014-02-19 12:00:00.000000", "2014-02-19 13:00:00.000000"],
    ["2014-02-19 10:50:00.000000", "2014-02-19 11:00:00.000000"]
  ]
}`))
	require.NoError(t, err)
	assert.Empty(t, ws["a/none.csv"])
	require.Len(t, ws["b/two.csv"], 2)
	assert.Equal(t, Window{at("2014-02-19 10:50:00"), at("2014-02-19 11:00:00")}, ws["b/two.csv"][0], "sorted")
	assert.Equal(t, time.UTC, ws["b/two.csv"][0].Start.Location())

	for name, in := range map[string]string{
		"overlap":   `{"x": [["2014-01-01 00:00:00", "2014-01-01 02:00:00"], ["2014-01-01 01:00:00", "2014-01-01 03:00:00"]]}`,
		"backwards": `{"x": [["2014-01-01 02:00:00", "2014-01-01 01:00:00"]]}`,
		"one end":   `{"x": [["2014-01-01 02:00:00"]]}`,
		"bad time":  `{"x": [["yesterday", "2014-01-01 01:00:00"]]}`,
		"not json":  `[`,
	} {
		_, err := ReadWindows(strings.NewReader(in))
		assert.Error(t, err, name)
	}
}

func TestSpans(t *testing.T) {
	// Rows every 5 minutes from 00:00 to 00:45 (rows 0..9).
	var times []time.Time
	for i := range 10 {
		times = append(times, at("2014-01-01 00:00:00").Add(time.Duration(i)*5*time.Minute))
	}
	spans, err := Spans(times, []Window{
		{at("2014-01-01 00:10:00.000000"), at("2014-01-01 00:20:00")}, // exact: rows 2..4
		{at("2014-01-01 00:26:00"), at("2014-01-01 00:39:59")},        // inexact ends: rows 6..7
		{at("2014-01-01 00:44:00"), at("2014-01-01 01:00:00")},        // runs off the end: row 9
	})
	require.NoError(t, err)
	assert.Equal(t, []Span{{2, 4}, {6, 7}, {9, 9}}, spans)
	assert.Equal(t, 3, spans[0].Width())

	_, err = Spans(times, []Window{{at("2014-01-01 00:11:00"), at("2014-01-01 00:12:00")}})
	assert.Error(t, err, "window between rows")
}

func TestSeriesRoundTrip(t *testing.T) {
	s, err := ReadSeries(strings.NewReader("timestamp,value\n2014-01-01 00:00:00,1.5\n2014-01-01 00:05:00,0.0\n2014-01-01 00:10:00,-2e3\n"))
	require.NoError(t, err)
	assert.Equal(t, 3, s.Len())
	assert.Equal(t, []float64{1.5, 0, -2000}, s.Values)
	assert.Nil(t, s.Scores)
	assert.Nil(t, s.Labels)

	s.Scores = []float64{0, 0.25, 1}
	s.Labels = []bool{false, true, false}
	var buf bytes.Buffer
	require.NoError(t, WriteResults(&buf, s))
	assert.Equal(t, "timestamp,value,anomaly_score,label\n"+
		"2014-01-01 00:00:00,1.5,0,0\n"+
		"2014-01-01 00:05:00,0,0.25,1\n"+
		"2014-01-01 00:10:00,-2000,1,0\n", buf.String())

	back, err := ReadSeries(&buf)
	require.NoError(t, err)
	assert.Equal(t, s, back)

	for name, in := range map[string]string{
		"empty":     "",
		"no rows":   "timestamp,value\n",
		"no value":  "timestamp,score\n2014-01-01 00:00:00,1\n",
		"bad time":  "timestamp,value\n2014-01-01,1\n",
		"bad value": "timestamp,value\n2014-01-01 00:00:00,x\n",
	} {
		_, err := ReadSeries(strings.NewReader(in))
		assert.Error(t, err, name)
	}
}

func TestSpansRepeatedTimes(t *testing.T) {
	// NAB's data repeats a few timestamps: rows, not times, count.
	times := []time.Time{at("2014-01-01 00:00:00"), at("2014-01-01 01:00:00"), at("2014-01-01 01:00:00"), at("2014-01-01 02:00:00"), at("2014-01-01 03:00:00")}
	spans, err := Spans(times, []Window{{at("2014-01-01 01:00:00"), at("2014-01-01 02:00:00")}})
	require.NoError(t, err)
	assert.Equal(t, []Span{{1, 3}}, spans)
	assert.Equal(t, []bool{false, true, true, true, false}, Labels(len(times), spans))
}
