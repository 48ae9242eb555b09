// Package csvrow parses the cells of the CSV files the tools replay: NAB
// style timestamps and numeric values.
package csvrow

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// TimeLayout is the CSV timestamp format (NAB style), read as UTC.
const TimeLayout = "2006-01-02 15:04:05"

// ParseTime parses "YYYY-MM-DD HH:MM:SS" as UTC; RFC 3339 is accepted too.
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.ParseInLocation(TimeLayout, s, time.UTC); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("bad timestamp %q: want %q (UTC) or RFC 3339", s, TimeLayout)
}

// ParseValue parses a value cell. Empty, non-numeric, NaN and infinite
// cells are not values.
func ParseValue(s string) (float64, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, false
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false
	}
	return v, true
}
