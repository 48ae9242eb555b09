package iforestprocessor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/otel-iforest/iforest/internal/detector"
	"github.com/otel-iforest/iforest/internal/metadata"
	"github.com/otel-iforest/iforest/internal/rules"
)

// Operators in the loop: rules that skip or mute datapoints in time windows,
// inline or in a rules file that is re-read when it changes, and feedback
// that an incident was normal (feedback.go). The detector knows nothing of
// either: a skipped datapoint never reaches it, and for every other one the
// processor edits the detector's verdict before writing it (gate), so that
// a muted model scores and learns exactly as it would without the rule.

// OperatorConfig holds the operators' rules and feedback. Its keys sit at
// the top level of the processor's configuration.
type OperatorConfig struct {
	// Rules skip or mute datapoints (see rules.Rule).
	Rules []rules.Rule `mapstructure:"rules"`
	// RulesFile is a YAML file with `rules:` and `feedback:` lists, re-read
	// when it changes; its rules apply after the inline ones.
	RulesFile string `mapstructure:"rules_file"`
	// Feedback are operators' verdicts on incidents (see feedback.go).
	Feedback []rules.Feedback `mapstructure:"feedback"`
	// FeedbackTTL is how long a feedback entry is in force after it was
	// first applied.
	FeedbackTTL time.Duration `mapstructure:"feedback_ttl"`
}

// defaultFeedbackTTL keeps an operator's word for a month: long enough for
// monthly jobs, short enough that a series that changed is judged afresh.
const defaultFeedbackTTL = 30 * 24 * time.Hour

func (c *OperatorConfig) validate() error {
	var errs []error
	if _, err := rules.Compile(c.Rules, "rules"); err != nil {
		errs = append(errs, err)
	}
	if _, err := rules.FeedbackIDs(c.Feedback, "feedback"); err != nil {
		errs = append(errs, err)
	}
	if c.FeedbackTTL <= 0 {
		errs = append(errs, fmt.Errorf("feedback_ttl: must be positive, got %v", c.FeedbackTTL))
	}
	return errors.Join(errs...)
}

// feedbackOn says whether feedback can arrive, so the processor keeps the
// table of recent incidents it needs (and saves it with storage).
func (c *OperatorConfig) feedbackOn() bool { return c.RulesFile != "" || len(c.Feedback) > 0 }

// rulesPollInterval is how often the rules file is checked for changes (its
// size and modification time; read only when they change).
const rulesPollInterval = 3 * time.Second

// operators applies the rules and the feedback in the processor.
type operators struct {
	cfg    *OperatorConfig
	logger *zap.Logger
	tel    *metadata.TelemetryBuilder
	now    func() time.Time

	inline    []*rules.Compiled
	inlineFb  []uint64
	set       atomic.Pointer[ruleSet]
	fb        *feedback // nil unless feedbackOn
	hidden    hiddenIncidents
	suppAttrs [numSuppress]metric.MeasurementOption
	errAttrs  [2]metric.MeasurementOption // rules_file, unknown_incident

	// The rules file and the goroutine that watches it.
	interval time.Duration
	stop     chan struct{}
	done     chan struct{}
	fileMod  time.Time
	fileSize int64
	fileData []byte // last content read, applied or not
	fileOK   bool   // fileData was applied
	fileErr  string // last read error logged, so it is logged once
}

// ruleSet is one version of the rules in force and their telemetry
// attributes.
type ruleSet struct {
	*rules.Set
	attrs []metric.MeasurementOption // per rule: its name and action
}

const (
	suppressMute = iota
	suppressFeedback
	numSuppress
)

func newOperators(cfg *Config, logger *zap.Logger, tel *metadata.TelemetryBuilder) (*operators, error) {
	oc := &cfg.Operator
	o := &operators{cfg: oc, logger: logger, tel: tel, now: time.Now, interval: rulesPollInterval}
	var err error
	if o.inline, err = rules.Compile(oc.Rules, "rules"); err != nil {
		return nil, err
	}
	if o.inlineFb, err = rules.FeedbackIDs(oc.Feedback, "feedback"); err != nil {
		return nil, err
	}
	limit := cfg.MaxSeries
	if limit <= 0 {
		limit = unlimitedIncidents
	}
	o.hidden.limit = limit
	if oc.feedbackOn() {
		o.fb = newFeedback(limit, oc.FeedbackTTL, logger, o.now)
	}
	o.set.Store(newRuleSet(o.inline))
	for i, r := range []string{"mute", "feedback"} {
		o.suppAttrs[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", r)))
	}
	for i, r := range []string{"rules_file", "unknown_incident"} {
		o.errAttrs[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", r)))
	}
	return o, nil
}

// unlimitedIncidents bounds the incident tables when max_series is 0.
const unlimitedIncidents = 1 << 16

func newRuleSet(rs []*rules.Compiled) *ruleSet {
	s := &ruleSet{Set: rules.NewSet(rs)}
	for _, r := range rs {
		action := rules.ActionMute
		if r.Skip {
			action = rules.ActionSkip
		}
		s.attrs = append(s.attrs, metric.WithAttributeSet(attribute.NewSet(
			attribute.String("rule", r.Name), attribute.String("action", action))))
	}
	return s
}

// start reads the rules file (an unreadable or invalid one fails the start,
// naming the key), then runs startInner (the persister, which restores the
// saved feedback), then puts the rules and feedback in force and starts
// watching the file.
func (o *operators) start(ctx context.Context, startInner func() error) error {
	var file rules.File
	if o.cfg.RulesFile != "" {
		st, data, err := o.readFile()
		if err != nil {
			return fmt.Errorf("rules_file: %w", err)
		}
		if file, err = o.parseFile(data); err != nil {
			return err
		}
		o.fileMod, o.fileSize, o.fileData, o.fileOK = st.ModTime(), st.Size(), data, true
	}
	if err := startInner(); err != nil {
		return err
	}
	if err := o.install(ctx, file, true); err != nil {
		return err // checked by parseFile already
	}
	if o.fb != nil {
		o.stop, o.done = make(chan struct{}), make(chan struct{})
		go o.watch()
	}
	return nil
}

// shutdown stops watching the rules file.
func (o *operators) shutdown() {
	if o.stop != nil {
		close(o.stop)
		<-o.done
		o.stop = nil
	}
}

func (o *operators) readFile() (os.FileInfo, []byte, error) {
	st, err := os.Stat(o.cfg.RulesFile)
	if err != nil {
		return nil, nil, err
	}
	data, err := os.ReadFile(o.cfg.RulesFile)
	return st, data, err
}

// parseFile checks a rules file's content; errors name the file and the key.
func (o *operators) parseFile(data []byte) (rules.File, error) {
	key := fmt.Sprintf("rules_file (%s)", o.cfg.RulesFile)
	f, err := rules.ParseFile(data)
	if err != nil {
		return f, fmt.Errorf("%s: %w", key, err)
	}
	var errs []error
	rs, err := rules.Compile(f.Rules, key+": rules")
	errs = append(errs, err)
	for i, r := range rs {
		for j, in := range o.inline {
			if r.Name == in.Name {
				errs = append(errs, fmt.Errorf("%s: rules[%d].name: %q is also the name of rules[%d] in the processor's configuration; rule names must be unique", key, i, r.Name, j))
			}
		}
	}
	_, err = rules.FeedbackIDs(f.Feedback, key+": feedback")
	errs = append(errs, err)
	return f, errors.Join(errs...)
}

// install puts the inline rules followed by the file's in force, and the
// inline feedback with the file's.
func (o *operators) install(ctx context.Context, f rules.File, first bool) error {
	rs, err := rules.Compile(f.Rules, "rules")
	if err != nil {
		return err
	}
	ids, err := rules.FeedbackIDs(f.Feedback, "feedback")
	if err != nil {
		return err
	}
	all := append(append([]*rules.Compiled(nil), o.inline...), rs...)
	o.set.Store(newRuleSet(all))
	if o.fb != nil {
		o.fb.setList(append(append([]uint64(nil), o.inlineFb...), ids...))
	}
	if o.cfg.RulesFile != "" {
		msg := "rules file loaded"
		if first {
			msg = "rules file read"
		}
		o.logger.Info(msg, zap.String("rules_file", o.cfg.RulesFile),
			zap.Int("rules", len(rs)), zap.Int("feedback", len(ids)), zap.Int("rules_in_force", len(all)))
	}
	return nil
}

// watch re-reads the rules file when its size or modification time
// changes, and lets feedback expire.
func (o *operators) watch() {
	defer close(o.done)
	t := time.NewTicker(o.interval)
	defer t.Stop()
	for {
		select {
		case <-o.stop:
			return
		case <-t.C:
			ctx := context.Background()
			if o.cfg.RulesFile != "" {
				o.reload(ctx)
			}
			if dropped := o.fb.tick(); dropped > 0 {
				o.tel.ProcessorIforestRulesErrors.Add(ctx, int64(dropped), o.errAttrs[1])
			}
		}
	}
}

// reload applies the rules file if it changed. A file that cannot be read
// or is invalid keeps the rules in force: one warning per change, naming
// the file and the key, and a count.
func (o *operators) reload(ctx context.Context) {
	fail := func(msg string, err error) {
		if err.Error() == o.fileErr {
			return
		}
		o.fileErr = err.Error()
		o.logger.Warn(msg, zap.String("rules_file", o.cfg.RulesFile), zap.Error(err))
		o.tel.ProcessorIforestRulesErrors.Add(ctx, 1, o.errAttrs[0])
	}
	st, err := os.Stat(o.cfg.RulesFile)
	if err != nil {
		fail("cannot read the rules file; the rules in force stay", err)
		return
	}
	if st.ModTime().Equal(o.fileMod) && st.Size() == o.fileSize {
		return
	}
	data, err := os.ReadFile(o.cfg.RulesFile)
	if err != nil {
		fail("cannot read the rules file; the rules in force stay", err)
		return
	}
	o.fileMod, o.fileSize = st.ModTime(), st.Size()
	if bytes.Equal(data, o.fileData) && o.fileOK {
		o.fileErr = ""
		return
	}
	o.fileData, o.fileOK = data, false
	f, err := o.parseFile(data)
	if err != nil {
		fail("the rules file is invalid; the rules in force stay", err)
		return
	}
	if err := o.install(ctx, f, false); err != nil {
		fail("the rules file is invalid; the rules in force stay", err)
		return
	}
	o.fileOK, o.fileErr = true, ""
}

// opsBatch is one batch's view of the rules and its counts.
type opsBatch struct {
	set        *ruleSet          // the rules in force for the whole batch
	cands      []*rules.Compiled // rules that can apply to the current metric
	counts     []int64           // datapoints per rule
	suppressed [numSuppress]int64
}

// metric prepares the rules for the datapoints of the metric name.
func (o *operators) metric(ob *opsBatch, name string) {
	if ob.set == nil {
		ob.set = o.set.Load()
	}
	ob.cands = ob.set.ForMetric(name)
}

// rule returns the mute rule that applies to a datapoint of the current
// metric at t (unix nanoseconds; 0: now), or skip if a skip rule does.
func (o *operators) rule(ob *opsBatch, attrs, res pcommon.Map, t, now int64) (mute *rules.Compiled, skip bool) {
	if ob.cands == nil {
		return nil, false
	}
	if t == 0 {
		t = now
	}
	r := rules.Apply(ob.cands, t, attrs, res)
	if r == nil {
		return nil, false
	}
	if ob.counts == nil {
		ob.counts = make([]int64, len(ob.set.Rules))
	}
	ob.counts[r.Index]++
	if r.Skip {
		return nil, true
	}
	return r, false
}

// gate edits a scored verdict for the rules and the feedback: a muted
// datapoint, or a flag within what an operator called normal, is not
// flagged and opens no incident. value is the datapoint's value (NaN when
// there is none, e.g. joined models), key its model's key.
func (o *operators) gate(ob *opsBatch, key uint64, value float64, mute *rules.Compiled, v *detector.Verdict) {
	if mute == nil && !v.Anomaly && v.IncidentID == 0 {
		return
	}
	suppress, why := mute != nil, suppressMute
	if !suppress && v.Anomaly && o.fb != nil && o.fb.tolerates(key, value, v) {
		suppress, why = true, suppressFeedback
	}
	if suppress && v.Anomaly {
		ob.suppressed[why]++
	}
	if v.IncidentID != 0 {
		o.hidden.apply(key, suppress && v.Anomaly || suppress && v.Incident == detector.Started, v)
	}
	if suppress {
		v.Anomaly = false
	}
	if o.fb != nil && v.Anomaly && v.IncidentID != 0 {
		o.fb.record(key, value, v)
	}
}

// record reports a batch's rule and suppression counts.
func (o *operators) record(ctx context.Context, ob *opsBatch) {
	for i, n := range ob.counts {
		if n > 0 {
			o.tel.ProcessorIforestRuleDatapoints.Add(ctx, n, ob.set.attrs[i])
		}
	}
	for i, n := range ob.suppressed {
		if n > 0 {
			o.tel.ProcessorIforestAnomaliesSuppressed.Add(ctx, n, o.suppAttrs[i])
		}
	}
}

// memoryBytes estimates what the rules' name cache and the incident and
// feedback tables hold.
func (o *operators) memoryBytes() int64 {
	n := o.set.Load().MemoryBytes() + o.hidden.memoryBytes()
	if o.fb != nil {
		n += o.fb.memoryBytes()
	}
	return n
}

// hiddenIncidents are incidents the detector opened while every flag was
// withheld (a mute, or feedback). The detector keeps its own incident
// state and knows nothing of rules, so the processor hides such an
// incident from the output: no start, no id, no end. If a later point of
// it is flagged and not withheld (a mute window ended while the trouble
// goes on, or a departure beyond the feedback's), the incident is reported
// as starting there, under the detector's id; its end is reported as
// usual, with duration and peak counted from its first, hidden point.
type hiddenIncidents struct {
	mu    sync.Mutex
	n     atomic.Int64
	limit int
	byKey map[uint64]uint64 // model key -> hidden incident id
}

// apply hides or reveals v's incident; suppressed says that v's flag (or
// its incident's start) was withheld.
func (h *hiddenIncidents) apply(key uint64, suppressed bool, v *detector.Verdict) {
	if h.n.Load() == 0 && !(suppressed && v.Incident == detector.Started) {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	id, hidden := h.byKey[key]
	hidden = hidden && id == v.IncidentID
	switch {
	case hidden && v.Anomaly && !suppressed:
		h.remove(key)
		v.Incident = detector.Started
	case hidden:
		if v.Incident == detector.Ended {
			h.remove(key)
		}
		hide(v)
	case suppressed && v.Incident == detector.Started:
		if h.byKey == nil {
			h.byKey = map[uint64]uint64{}
		}
		if _, ok := h.byKey[key]; !ok && len(h.byKey) >= h.limit {
			// Full: forget one (its series is most likely gone; were it not,
			// the rest of its incident would show without a start, which
			// the anomalyevents connector ignores).
			for k := range h.byKey {
				h.remove(k)
				break
			}
		}
		if _, ok := h.byKey[key]; !ok {
			h.n.Add(1)
		}
		h.byKey[key] = v.IncidentID
		hide(v)
	}
}

func (h *hiddenIncidents) remove(key uint64) {
	delete(h.byKey, key)
	h.n.Add(-1)
}

func hide(v *detector.Verdict) {
	v.Incident, v.IncidentID, v.IncidentDuration, v.IncidentPeak = detector.NoTransition, 0, 0, 0
}

func (h *hiddenIncidents) memoryBytes() int64 {
	// A map entry of two words and its share of the buckets, roughly.
	return h.n.Load() * 32
}

// noValue is the value passed to gate for verdicts without one.
var noValue = math.NaN()
