package csvrow

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseTime(t *testing.T) {
	for in, want := range map[string]string{
		"2014-04-10 00:02:00":       "2014-04-10T00:02:00Z",
		" 2014-04-10 00:02:00 ":     "2014-04-10T00:02:00Z",
		"2014-04-10 00:02:00.5":     "2014-04-10T00:02:00.5Z",
		"2014-04-10T02:02:00+02:00": "2014-04-10T00:02:00Z",
	} {
		got, err := ParseTime(in)
		require.NoError(t, err, in)
		w, _ := time.Parse(time.RFC3339Nano, want)
		assert.True(t, got.Equal(w), in)
		assert.Equal(t, time.UTC, got.Location(), in)
	}
	for _, bad := range []string{"", "yesterday", "2014-04-10", "10/04/2014 00:02"} {
		_, err := ParseTime(bad)
		assert.ErrorContains(t, err, "bad timestamp", bad)
	}
}

func TestParseValue(t *testing.T) {
	for s, want := range map[string]float64{"1": 1, " -2.5 ": -2.5, "1e3": 1000} {
		v, ok := ParseValue(s)
		assert.True(t, ok, s)
		assert.Equal(t, want, v, s)
	}
	for _, s := range []string{"", "  ", "abc", "NaN", "inf", "-Inf", "1e400", "1,5"} {
		_, ok := ParseValue(s)
		assert.False(t, ok, s)
	}
}
