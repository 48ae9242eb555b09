// Package confcheck checks a component's raw configuration for what
// confmap's decoding would silently turn into something else, and names
// each such key:
//
//   - a duration without a unit: `series_ttl: 5` decodes as 5ns;
//   - a fraction, null or an out-of-range number for a whole-number key:
//     `max_series: 0.5` and `max_series: null` decode as 0 (no limit),
//     `sample_size: 1e308` as -9223372036854775808.
package confcheck

import (
	"encoding"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"time"
)

// Values checks raw (a component's section as confmap holds it) against
// the fields of config struct type t, by their mapstructure keys.
func Values(raw map[string]any, t reflect.Type) []error {
	return checkValues("", raw, t)
}

var (
	durationType        = reflect.TypeFor[time.Duration]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// checkValues checks the raw values of the keys of struct type t (keys are
// prefixed with path).
func checkValues(path string, raw map[string]any, t reflect.Type) []error {
	var errs []error
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		if opts == "squash" {
			errs = append(errs, checkValues(path, raw, f.Type)...)
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		if v, ok := raw[name]; ok {
			errs = append(errs, checkValue(path+name, v, f.Type)...)
		}
	}
	return errs
}

func checkValue(key string, v any, t reflect.Type) []error {
	if t.Kind() == reflect.Pointer {
		if v == nil {
			return nil // unset
		}
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return nil // decodes itself, e.g. component.ID
	}
	switch {
	case t == durationType:
		if err := checkDuration(v); err != nil {
			return []error{fmt.Errorf("%s: %w", key, err)}
		}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		if err := checkWhole(v, true); err != nil {
			return []error{fmt.Errorf("%s: %w", key, err)}
		}
	case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64:
		if err := checkWhole(v, false); err != nil {
			return []error{fmt.Errorf("%s: %w", key, err)}
		}
	case t.Kind() == reflect.Float64 || t.Kind() == reflect.Float32:
		if v == nil {
			return []error{fmt.Errorf("%s: must be a number, got null (leave the key out for its default)", key)}
		}
	case t.Kind() == reflect.Struct:
		if m, ok := v.(map[string]any); ok {
			return checkValues(key+".", m, t)
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		var errs []error
		list, _ := v.([]any)
		for i, e := range list {
			if m, ok := e.(map[string]any); ok {
				errs = append(errs, checkValues(fmt.Sprintf("%s[%d].", key, i), m, t.Elem())...)
			}
		}
		return errs
	}
	return nil
}

// checkDuration accepts a string that time.ParseDuration takes (it needs a
// unit, except for "0") or a time.Duration set in Go.
func checkDuration(v any) error {
	switch x := v.(type) {
	case time.Duration:
		return nil
	case string:
		if _, err := time.ParseDuration(x); err != nil {
			return fmt.Errorf("%q is not a duration; write a number with a unit, e.g. 30s, 5m or 1h", x)
		}
		return nil
	case nil:
		return errors.New("must be a duration, got null (leave the key out for its default)")
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64:
		if reflect.ValueOf(x).IsZero() {
			return nil // 0 needs no unit
		}
		return fmt.Errorf("%v has no unit, which would mean %vns; write e.g. %vs or %vm", x, x, x, x)
	}
	return fmt.Errorf("must be a duration such as 30s, got %v", v)
}

// checkWhole accepts a whole number that fits an int64 (signed) or a
// uint64: an integer, or a float without a fraction (YAML reads 1e6 as a
// float).
func checkWhole(v any, signed bool) error {
	lo, hi, name := 0.0, float64(math.MaxUint64), "0 and 18446744073709551615"
	if signed {
		lo, hi, name = math.MinInt64, math.MaxInt64, "-9223372036854775808 and 9223372036854775807"
	}
	rv := reflect.ValueOf(v)
	fits := false
	switch {
	case v == nil:
		return errors.New("must be a whole number, got null (leave the key out for its default)")
	case rv.CanInt():
		fits = signed || rv.Int() >= 0
	case rv.CanUint():
		fits = !signed || rv.Uint() <= math.MaxInt64
	case rv.CanFloat():
		f := rv.Float()
		if f != math.Trunc(f) || math.IsInf(f, 0) {
			return fmt.Errorf("must be a whole number, got %v", v)
		}
		// float64(MaxInt64) and float64(MaxUint64) round up to 2^63 and
		// 2^64, which do not fit: the upper bound is exclusive.
		fits = f >= lo && f < hi
	default:
		return fmt.Errorf("must be a whole number, got %v", v)
	}
	if !fits {
		return fmt.Errorf("must be a whole number between %s, got %v", name, v)
	}
	return nil
}
