// Package rules is the operators' side of the iforest processor: rules that
// skip or mute datapoints in time windows (maintenance, known jobs), and the
// feedback entries that say an incident was normal. It parses and checks
// them, naming the YAML key of every problem, and answers per datapoint
// which rule applies. It keeps no state.
package rules // import "github.com/otel-iforest/iforest/internal/rules"

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/otel-iforest/iforest/internal/verdict"
)

// Actions of a rule.
const (
	// ActionMute: the model scores and learns the datapoint as without the
	// rule, but it is never flagged and opens no incident.
	ActionMute = "mute"
	// ActionSkip: the datapoint is neither scored nor learned (the model does
	// not take a maintenance window's data as normal); it passes through
	// unchanged.
	ActionSkip = "skip"
)

// VerdictNormal is the one feedback verdict: the incident was normal.
const VerdictNormal = "normal"

// Rule is one entry of `rules:`.
type Rule struct {
	Name   string `mapstructure:"name"`
	Match  Match  `mapstructure:"match"`
	When   When   `mapstructure:"when"`
	Action string `mapstructure:"action"`
}

// Match says which datapoints a rule applies to; every part is optional and
// all given parts must hold.
type Match struct {
	// Metrics are regular expressions; one must match the metric name fully.
	Metrics []string `mapstructure:"metrics"`
	// Attributes and ResourceAttributes must all be present with these
	// values (compared as strings, so `cpu: 0` matches an int 0 or a
	// string "0").
	Attributes         map[string]any `mapstructure:"attributes"`
	ResourceAttributes map[string]any `mapstructure:"resource_attributes"`
}

// When says when a rule is in force, by the datapoint's timestamp, in UTC:
// in any of the ranges given. No range at all means always.
type When struct {
	// Daily ranges "HH:MM-HH:MM"; the end may be 24:00, an end before the
	// start wraps midnight ("23:00-01:00").
	Daily []string `mapstructure:"daily"`
	// Weekly ranges "Day HH:MM-Day HH:MM" (Mon..Sun); an end before the
	// start wraps the week ("Sun 22:00-Mon 02:00").
	Weekly []string `mapstructure:"weekly"`
	// Between are absolute ranges [start, end) of two RFC 3339 times.
	Between [][]string `mapstructure:"between"`
}

// Feedback is one entry of `feedback:`: an operator's verdict on an
// incident the processor reported.
type Feedback struct {
	IncidentID string `mapstructure:"incident_id"`
	Verdict    string `mapstructure:"verdict"`
}

// File is what a rules file holds.
type File struct {
	Rules    []Rule     `mapstructure:"rules"`
	Feedback []Feedback `mapstructure:"feedback"`
}

// ParseFile decodes a rules file's YAML the way the collector decodes its
// configuration (unknown keys are errors). An empty file holds nothing.
func ParseFile(data []byte) (File, error) {
	var f File
	ret, err := confmap.NewRetrievedFromYAML(data)
	if err != nil {
		return f, err
	}
	conf, err := ret.AsConf()
	if err != nil {
		return f, err
	}
	err = conf.Unmarshal(&f)
	return f, err
}

// Compiled is a checked rule, ready to be applied.
type Compiled struct {
	Name string
	Skip bool // else mute
	// Index is the rule's position in its Set.
	Index int

	metrics    []*regexp.Regexp
	attrs, res []kv
	always     bool
	daily      []span // seconds of the UTC day, [from, to)
	weekly     []span // seconds of the UTC week from Monday 00:00, [from, to)
	between    []span // unix nanoseconds, [from, to)
}

type kv struct{ k, v string }

type span struct{ from, to int64 }

const (
	day  = 24 * 60 * 60
	week = 7 * day
)

// Compile checks rules and compiles them; key is the YAML path of the list
// (e.g. "rules"), which starts every error message. All problems are
// reported at once.
func Compile(rs []Rule, key string) ([]*Compiled, error) {
	var errs []error
	var out []*Compiled
	seen := map[string]int{}
	for i, r := range rs {
		rk := fmt.Sprintf("%s[%d]", key, i)
		c, err := compile(r, rk)
		if r.Name != "" {
			if j, dup := seen[r.Name]; dup {
				err = errors.Join(err, fmt.Errorf("%s.name: %q is also the name of %s[%d]; rule names must be unique (they label the telemetry)", rk, r.Name, key, j))
			} else {
				seen[r.Name] = i
			}
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, c)
	}
	return out, errors.Join(errs...)
}

func compile(r Rule, key string) (*Compiled, error) {
	var errs []error
	c := &Compiled{Name: r.Name}
	if r.Name == "" {
		errs = append(errs, fmt.Errorf("%s.name: must be set", key))
	}
	switch r.Action {
	case ActionMute:
	case ActionSkip:
		c.Skip = true
	case "":
		errs = append(errs, fmt.Errorf("%s.action: must be set: %q or %q", key, ActionMute, ActionSkip))
	default:
		errs = append(errs, fmt.Errorf("%s.action: must be %q or %q, got %q", key, ActionMute, ActionSkip, r.Action))
	}
	for i, p := range r.Match.Metrics {
		re, err := regexp.Compile(`^(?:` + p + `)$`)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.match.metrics[%d]: invalid regular expression %q: %w", key, i, p, err))
			continue
		}
		c.metrics = append(c.metrics, re)
	}
	var err error
	if c.attrs, err = sortedKVs(r.Match.Attributes, key+".match.attributes"); err != nil {
		errs = append(errs, err)
	}
	if c.res, err = sortedKVs(r.Match.ResourceAttributes, key+".match.resource_attributes"); err != nil {
		errs = append(errs, err)
	}
	for i, s := range r.When.Daily {
		sp, err := parseDaily(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.when.daily[%d]: %q: %w", key, i, s, err))
			continue
		}
		c.daily = append(c.daily, sp...)
	}
	for i, s := range r.When.Weekly {
		sp, err := parseWeekly(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.when.weekly[%d]: %q: %w", key, i, s, err))
			continue
		}
		c.weekly = append(c.weekly, sp...)
	}
	for i, b := range r.When.Between {
		sp, err := parseBetween(b, fmt.Sprintf("%s.when.between[%d]", key, i))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c.between = append(c.between, sp)
	}
	c.always = len(r.When.Daily) == 0 && len(r.When.Weekly) == 0 && len(r.When.Between) == 0
	return c, errors.Join(errs...)
}

// sortedKVs turns wanted attribute values into strings as pcommon's
// AsString renders them.
func sortedKVs(m map[string]any, key string) ([]kv, error) {
	var errs []error
	out := make([]kv, 0, len(m))
	for k, v := range m {
		if k == "" {
			errs = append(errs, fmt.Errorf("%s: an attribute key is empty", key))
			continue
		}
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case bool:
			s = strconv.FormatBool(x)
		case int:
			s = strconv.Itoa(x)
		case int64:
			s = strconv.FormatInt(x, 10)
		case uint64:
			s = strconv.FormatUint(x, 10)
		case float64:
			s = pcommon.NewValueDouble(x).AsString()
		default:
			errs = append(errs, fmt.Errorf("%s.%s: must be a string, number or bool, got %v", key, k, v))
			continue
		}
		out = append(out, kv{k, s})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].k < out[j].k })
	return out, errors.Join(errs...)
}

// parseClock reads "HH:MM" as seconds of the day; 24:00 only when it may
// end a range.
func parseClock(s string, end bool) (int64, error) {
	hh, mm, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok || len(hh) != 2 || len(mm) != 2 {
		return 0, fmt.Errorf("%q is not a time of day HH:MM", s)
	}
	h, err1 := strconv.Atoi(hh)
	m, err2 := strconv.Atoi(mm)
	if err1 != nil || err2 != nil || h < 0 || m < 0 {
		return 0, fmt.Errorf("%q is not a time of day HH:MM", s)
	}
	switch {
	case h == 24 && m == 0 && end:
		return day, nil
	case h == 24 && m == 0:
		return 0, fmt.Errorf("24:00 can only end a range (start at 00:00 instead)")
	case h > 23 || m > 59:
		return 0, fmt.Errorf("%q is not a time of day: hours 00-23 (24:00 to end a range), minutes 00-59", s)
	}
	return int64(h*3600 + m*60), nil
}

// wrapped turns [from, to) within a period into spans; an end before the
// start wraps around the period's end.
func wrapped(from, to, period int64) ([]span, error) {
	switch {
	case from == to:
		return nil, errors.New("the range is empty (start equals end)")
	case from < to:
		return []span{{from, to}}, nil
	}
	out := []span{{from, period}}
	if to > 0 {
		out = append(out, span{0, to})
	}
	return out, nil
}

func parseDaily(s string) ([]span, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return nil, errors.New(`want "HH:MM-HH:MM", e.g. "01:00-03:30" (UTC)`)
	}
	from, err := parseClock(a, false)
	if err != nil {
		return nil, err
	}
	to, err := parseClock(b, true)
	if err != nil {
		return nil, err
	}
	return wrapped(from, to, day)
}

var weekdays = map[string]int64{
	"mon": 0, "monday": 0, "tue": 1, "tuesday": 1, "wed": 2, "wednesday": 2,
	"thu": 3, "thursday": 3, "fri": 4, "friday": 4, "sat": 5, "saturday": 5, "sun": 6, "sunday": 6,
}

// parseWeekTime reads "Day HH:MM" as seconds of the week from Monday 00:00.
func parseWeekTime(s string, end bool) (int64, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, fmt.Errorf("%q is not \"Day HH:MM\"", strings.TrimSpace(s))
	}
	d, ok := weekdays[strings.ToLower(f[0])]
	if !ok {
		return 0, fmt.Errorf("%q is not a day: Mon, Tue, Wed, Thu, Fri, Sat or Sun", f[0])
	}
	c, err := parseClock(f[1], end)
	if err != nil {
		return 0, err
	}
	return d*day + c, nil
}

func parseWeekly(s string) ([]span, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return nil, errors.New(`want "Day HH:MM-Day HH:MM", e.g. "Sat 00:00-Sun 24:00" (UTC)`)
	}
	from, err := parseWeekTime(a, false)
	if err != nil {
		return nil, err
	}
	to, err := parseWeekTime(b, true)
	if err != nil {
		return nil, err
	}
	return wrapped(from, to, week)
}

func parseBetween(b []string, key string) (span, error) {
	if len(b) != 2 {
		return span{}, fmt.Errorf("%s: want [start, end], two RFC 3339 times, got %d values", key, len(b))
	}
	var ts [2]int64
	for i, s := range b {
		t, err := time.Parse(time.RFC3339, strings.TrimSpace(s))
		if err != nil {
			return span{}, fmt.Errorf("%s[%d]: %q is not an RFC 3339 time like 2026-12-24T00:00:00Z", key, i, s)
		}
		ts[i] = t.UnixNano()
	}
	if ts[1] <= ts[0] {
		return span{}, fmt.Errorf("%s: the end %s is not after the start %s", key, b[1], b[0])
	}
	return span{ts[0], ts[1]}, nil
}

// AppliesToMetric reports whether the rule can apply to a metric's
// datapoints.
func (c *Compiled) AppliesToMetric(name string) bool {
	if len(c.metrics) == 0 {
		return true
	}
	for _, re := range c.metrics {
		if re.MatchString(name) {
			return true
		}
	}
	return false
}

// Active reports whether the rule is in force at t (unix nanoseconds).
func (c *Compiled) Active(t int64) bool {
	if c.always {
		return true
	}
	for _, s := range c.between {
		if t >= s.from && t < s.to {
			return true
		}
	}
	if len(c.daily) == 0 && len(c.weekly) == 0 {
		return false
	}
	secs := floorDiv(t, 1e9)
	sod := floorMod(secs, day)
	for _, s := range c.daily {
		if sod >= s.from && sod < s.to {
			return true
		}
	}
	// 1970-01-01 was a Thursday, day 3 of a week that starts on Monday.
	sow := floorMod(secs+3*day, week)
	for _, s := range c.weekly {
		if sow >= s.from && sow < s.to {
			return true
		}
	}
	return false
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 { return a - floorDiv(a, b)*b }

// Matches reports whether the datapoint's and its resource's attributes
// have the values the rule asks for.
func (c *Compiled) Matches(attrs, res pcommon.Map) bool {
	return hasAll(attrs, c.attrs) && hasAll(res, c.res)
}

func hasAll(m pcommon.Map, want []kv) bool {
	for _, w := range want {
		v, ok := m.Get(w.k)
		if !ok || v.AsString() != w.v {
			return false
		}
	}
	return true
}

// Set is the rules in force, in order. It remembers per metric name which
// rules can apply, so a datapoint is compared only with those.
type Set struct {
	Rules []*Compiled

	byName sync.Map // metric name -> []*Compiled (nil: none)
	cached atomic.Int64
	bytes  atomic.Int64
}

// MaxCachedNames bounds the metric names a Set remembers; others are
// matched against the rules' patterns each time.
const MaxCachedNames = 4096

// NewSet numbers rules and returns them as a set.
func NewSet(rs []*Compiled) *Set {
	for i, r := range rs {
		r.Index = i
	}
	return &Set{Rules: rs}
}

// ForMetric returns the rules that can apply to the datapoints of the
// metric name, nil if none.
func (s *Set) ForMetric(name string) []*Compiled {
	if s == nil || len(s.Rules) == 0 {
		return nil
	}
	if v, ok := s.byName.Load(name); ok {
		return v.([]*Compiled)
	}
	var out []*Compiled
	for _, r := range s.Rules {
		if r.AppliesToMetric(name) {
			out = append(out, r)
		}
	}
	if s.cached.Load() < MaxCachedNames {
		if _, loaded := s.byName.LoadOrStore(name, out); !loaded {
			s.cached.Add(1)
			// A sync.Map entry, the name and the slice, roughly.
			s.bytes.Add(int64(96 + len(name) + 8*cap(out)))
		}
	}
	return out
}

// Apply returns the rule that applies to a datapoint of a metric whose
// candidate rules are cands (see ForMetric), at time t (unix nanoseconds),
// or nil. A skip rule wins over a mute rule; otherwise the first in order.
func Apply(cands []*Compiled, t int64, attrs, res pcommon.Map) *Compiled {
	var mute *Compiled
	for _, r := range cands {
		if (mute != nil && !r.Skip) || !r.Active(t) || !r.Matches(attrs, res) {
			continue
		}
		if r.Skip {
			return r
		}
		mute = r
	}
	return mute
}

// MemoryBytes estimates what the set's name cache holds.
func (s *Set) MemoryBytes() int64 {
	if s == nil {
		return 0
	}
	return s.bytes.Load()
}

// FeedbackIDs checks feedback entries and returns their incident ids in
// order, without repeats; key is the YAML path of the list.
func FeedbackIDs(fs []Feedback, key string) ([]uint64, error) {
	var errs []error
	var ids []uint64
	seen := map[uint64]bool{}
	for i, f := range fs {
		fk := fmt.Sprintf("%s[%d]", key, i)
		id, ok := verdict.ParseID(strings.ToLower(strings.TrimSpace(f.IncidentID)))
		if !ok {
			errs = append(errs, fmt.Errorf("%s.incident_id: must be an incident id as in anomaly.incident.id (16 hex digits), got %q", fk, f.IncidentID))
		}
		if f.Verdict != VerdictNormal {
			errs = append(errs, fmt.Errorf("%s.verdict: must be %q, got %q", fk, VerdictNormal, f.Verdict))
		}
		if ok && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids, errors.Join(errs...)
}
