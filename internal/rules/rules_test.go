package rules

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
)

// Golden files are rewritten with UPDATE_GOLDEN=1 go test ./internal/rules/.
var updateGolden = os.Getenv("UPDATE_GOLDEN") == "1"

func checkGolden(t *testing.T, file, got string) {
	t.Helper()
	if updateGolden {
		require.NoError(t, os.WriteFile(file, []byte(got), 0o600))
	}
	want, err := os.ReadFile(file)
	require.NoError(t, err)
	assert.Equal(t, string(want), got, "UPDATE_GOLDEN=1 rewrites %s", file)
}

// describe renders what a rule compiled to, spans as clock times.
func describe(c *Compiled) string {
	var b strings.Builder
	action := ActionMute
	if c.Skip {
		action = ActionSkip
	}
	fmt.Fprintf(&b, "%s: %s\n", c.Name, action)
	for _, re := range c.metrics {
		fmt.Fprintf(&b, "  metric %s\n", re)
	}
	for _, a := range c.attrs {
		fmt.Fprintf(&b, "  attribute %s=%q\n", a.k, a.v)
	}
	for _, a := range c.res {
		fmt.Fprintf(&b, "  resource attribute %s=%q\n", a.k, a.v)
	}
	if c.always {
		b.WriteString("  always\n")
	}
	clock := func(s int64) string { return fmt.Sprintf("%02d:%02d", s/3600, s%3600/60) }
	days := []string{"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun", "Mon+7"}
	for _, s := range c.daily {
		fmt.Fprintf(&b, "  daily [%s, %s)\n", clock(s.from), clock(s.to))
	}
	for _, s := range c.weekly {
		fmt.Fprintf(&b, "  weekly [%s %s, %s %s)\n", days[s.from/day], clock(s.from%day), days[s.to/day], clock(s.to%day))
	}
	for _, s := range c.between {
		fmt.Fprintf(&b, "  between [%s, %s)\n", time.Unix(0, s.from).UTC().Format(time.RFC3339), time.Unix(0, s.to).UTC().Format(time.RFC3339))
	}
	return b.String()
}

func TestParseGolden(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "valid.yaml"))
	require.NoError(t, err)
	f, err := ParseFile(data)
	require.NoError(t, err)
	rs, err := Compile(f.Rules, "rules")
	require.NoError(t, err)
	ids, err := FeedbackIDs(f.Feedback, "feedback")
	require.NoError(t, err)
	var b strings.Builder
	for _, r := range rs {
		b.WriteString(describe(r))
	}
	for _, id := range ids {
		fmt.Fprintf(&b, "feedback %016x\n", id)
	}
	checkGolden(t, filepath.Join("testdata", "valid.golden"), b.String())
}

func TestParseErrorsGolden(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "invalid.yaml"))
	require.NoError(t, err)
	f, err := ParseFile(data)
	require.NoError(t, err)
	_, rerr := Compile(f.Rules, "rules")
	_, ferr := FeedbackIDs(f.Feedback, "feedback")
	require.Error(t, rerr)
	require.Error(t, ferr)
	checkGolden(t, filepath.Join("testdata", "invalid.golden"), rerr.Error()+"\n"+ferr.Error()+"\n")
}

func TestParseFileErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"rules:\n  - name: x\n    mach: {}\n", "'rules[0]' has invalid keys: mach"},
		{"rule: []\n", "invalid keys: rule"},
		{"rules: [\n", "not valid YAML"},
		{"rules:\n  - name: x\n    match: {attributes: {a: [1, 2]}}\n    action: mute\n", ""},
	} {
		f, err := ParseFile([]byte(tc.yaml))
		if tc.want != "" {
			assert.ErrorContains(t, err, tc.want, tc.yaml)
			continue
		}
		require.NoError(t, err)
		_, err = Compile(f.Rules, "rules")
		assert.ErrorContains(t, err, "rules[0].match.attributes.a: must be a string, number or bool", tc.yaml)
	}
	f, err := ParseFile(nil)
	require.NoError(t, err, "an empty file holds nothing")
	assert.Empty(t, f.Rules)
}

func mustRule(t *testing.T, r Rule) *Compiled {
	t.Helper()
	if r.Name == "" {
		r.Name = "r"
	}
	if r.Action == "" {
		r.Action = ActionMute
	}
	cs, err := Compile([]Rule{r}, "rules")
	require.NoError(t, err)
	return cs[0]
}

func at(s string) int64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UnixNano()
}

// Schedules in UTC: half-open ranges, midnight, 24:00, ranges that wrap the
// day or the week, absolute ranges.
func TestScheduleEdges(t *testing.T) {
	// 2026-03-02 is a Monday, 2026-03-08 a Sunday.
	for _, tc := range []struct {
		name string
		when When
		in   []string
		out  []string
	}{
		{"daily", When{Daily: []string{"01:00-03:30"}},
			[]string{"2026-03-02T01:00:00Z", "2026-03-02T03:29:59.999Z", "1969-12-31T02:00:00Z"},
			[]string{"2026-03-02T00:59:59.999Z", "2026-03-02T03:30:00Z", "1969-12-31T03:30:00Z"}},
		{"to midnight", When{Daily: []string{"22:00-24:00"}},
			[]string{"2026-03-02T22:00:00Z", "2026-03-02T23:59:59.999999999Z"},
			[]string{"2026-03-03T00:00:00Z", "2026-03-02T21:59:59Z"}},
		{"from midnight", When{Daily: []string{"00:00-00:30"}},
			[]string{"2026-03-02T00:00:00Z", "2026-03-02T00:29:59Z"},
			[]string{"2026-03-01T23:59:59Z", "2026-03-02T00:30:00Z"}},
		{"whole day", When{Daily: []string{"00:00-24:00"}},
			[]string{"2026-03-02T00:00:00Z", "2026-03-02T12:00:00Z", "2026-03-02T23:59:59Z"}, nil},
		{"wraps midnight", When{Daily: []string{"23:00-01:00"}},
			[]string{"2026-03-02T23:00:00Z", "2026-03-02T23:59:59Z", "2026-03-03T00:00:00Z", "2026-03-03T00:59:59Z"},
			[]string{"2026-03-02T22:59:59Z", "2026-03-03T01:00:00Z", "2026-03-03T12:00:00Z"}},
		{"weekend", When{Weekly: []string{"Sat 00:00-Sun 24:00"}},
			[]string{"2026-03-07T00:00:00Z", "2026-03-08T23:59:59Z"},
			[]string{"2026-03-06T23:59:59Z", "2026-03-09T00:00:00Z", "2026-03-04T12:00:00Z"}},
		{"wraps the week", When{Weekly: []string{"Sun 22:00-Mon 02:00"}},
			[]string{"2026-03-08T22:00:00Z", "2026-03-08T23:59:59Z", "2026-03-09T00:00:00Z", "2026-03-09T01:59:59Z", "1970-01-04T23:00:00Z"},
			[]string{"2026-03-08T21:59:59Z", "2026-03-09T02:00:00Z", "2026-03-02T03:00:00Z", "2026-03-10T01:00:00Z"}},
		{"same day, wraps the week", When{Weekly: []string{"Fri 18:00-Fri 17:00"}},
			[]string{"2026-03-06T18:00:00Z", "2026-03-07T12:00:00Z", "2026-03-11T00:00:00Z", "2026-03-06T16:59:59Z"},
			[]string{"2026-03-06T17:00:00Z", "2026-03-06T17:59:59Z"}},
		{"between", When{Between: [][]string{{"2026-12-24T00:00:00Z", "2026-12-27T00:00:00+01:00"}}},
			[]string{"2026-12-24T00:00:00Z", "2026-12-26T22:59:59Z"},
			[]string{"2026-12-23T23:59:59Z", "2026-12-26T23:00:00Z"}},
		{"any of them", When{Daily: []string{"01:00-02:00"}, Weekly: []string{"Wed 12:00-Wed 13:00"}, Between: [][]string{{"2026-03-05T10:00:00Z", "2026-03-05T11:00:00Z"}}},
			[]string{"2026-03-02T01:30:00Z", "2026-03-04T12:30:00Z", "2026-03-05T10:30:00Z"},
			[]string{"2026-03-02T12:30:00Z", "2026-03-05T12:30:00Z", "2026-03-12T10:30:00Z"}},
		{"always", When{}, []string{"2026-03-02T01:30:00Z", "1970-01-01T00:00:00Z"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRule(t, Rule{When: tc.when})
			for _, s := range tc.in {
				assert.True(t, r.Active(at(s)), "%s: in force at %s", tc.name, s)
			}
			for _, s := range tc.out {
				assert.False(t, r.Active(at(s)), "%s: not in force at %s", tc.name, s)
			}
		})
	}
}

// A plain reference: a time is in a daily range when its clock time, read
// with the time package, is within [from, to) or, wrapped, outside [to, from).
func TestDailyAgainstTimePackage(t *testing.T) {
	ranges := []string{"01:00-03:30", "23:00-01:00", "00:00-24:00", "12:15-12:16", "23:59-00:01"}
	for _, rg := range ranges {
		r := mustRule(t, Rule{When: When{Daily: []string{rg}}})
		a, b, _ := strings.Cut(rg, "-")
		from, _ := parseClock(a, false)
		to, _ := parseClock(b, true)
		for ts := at("2026-03-01T00:00:00Z"); ts < at("2026-03-03T00:00:00Z"); ts += int64(7*time.Minute + 13*time.Second) {
			tm := time.Unix(0, ts).UTC()
			sod := int64(tm.Hour()*3600 + tm.Minute()*60 + tm.Second())
			want := sod >= from && sod < to
			if to <= from {
				want = sod >= from || sod < to
			}
			require.Equal(t, want, r.Active(ts), "%s at %s", rg, tm)
		}
	}
}

func TestMatchAndApply(t *testing.T) {
	mute := mustRule(t, Rule{Name: "mute", Match: Match{Metrics: []string{`system\.disk\..*`}, Attributes: map[string]any{"device": "sda", "cpu": 0}}, Action: ActionMute})
	skip := mustRule(t, Rule{Name: "skip", Match: Match{ResourceAttributes: map[string]any{"host.name": "db-1"}}, Action: ActionSkip})
	later := mustRule(t, Rule{Name: "later", When: When{Daily: []string{"12:00-13:00"}}, Action: ActionSkip})
	other := mustRule(t, Rule{Name: "mute2", Action: ActionMute})
	set := NewSet([]*Compiled{mute, skip, later, other})

	assert.True(t, mute.AppliesToMetric("system.disk.io"))
	assert.False(t, mute.AppliesToMetric("xsystem.disk.io"), "full match")
	assert.False(t, mute.AppliesToMetric("system.cpu"))

	attrs := pcommon.NewMap()
	attrs.PutStr("device", "sda")
	attrs.PutInt("cpu", 0)
	res := pcommon.NewMap()
	res.PutStr("host.name", "db-2")
	t0 := at("2026-03-02T01:00:00Z")

	disk := set.ForMetric("system.disk.io")
	assert.Equal(t, []*Compiled{mute, skip, later, other}, disk)
	assert.Equal(t, []*Compiled{skip, later, other}, set.ForMetric("system.cpu"))
	assert.Same(t, mute, Apply(disk, t0, attrs, res), "the first mute rule in order")
	res.PutStr("host.name", "db-1")
	assert.Same(t, skip, Apply(disk, t0, attrs, res), "skip wins over mute")
	attrs.PutStr("device", "sdb")
	assert.Same(t, skip, Apply(disk, t0, attrs, res))
	res.PutStr("host.name", "db-2")
	assert.Same(t, other, Apply(disk, t0, attrs, res))
	assert.Same(t, later, Apply(disk, at("2026-03-02T12:00:00Z"), attrs, res))
	attrs.Remove("cpu")
	attrs.PutStr("device", "sda")
	assert.Same(t, other, Apply(disk, t0, attrs, res), "a missing attribute does not match")

	var none *Set
	assert.Nil(t, none.ForMetric("x"))
	assert.Nil(t, NewSet(nil).ForMetric("x"))
	assert.Nil(t, Apply(nil, t0, attrs, res))
}

func TestForMetricCacheIsBounded(t *testing.T) {
	set := NewSet([]*Compiled{mustRule(t, Rule{Match: Match{Metrics: []string{`a\..*`}}})})
	for i := range MaxCachedNames + 100 {
		name := fmt.Sprintf("a.%d", i)
		require.Len(t, set.ForMetric(name), 1, name)
		require.Empty(t, set.ForMetric("b"+name))
	}
	assert.EqualValues(t, MaxCachedNames, set.cached.Load())
	assert.Positive(t, set.MemoryBytes())
	// Names beyond the bound are still answered right.
	assert.Len(t, set.ForMetric("a.new"), 1)
	assert.Empty(t, set.ForMetric("b.new"))
}
