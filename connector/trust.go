package anomalyeventsconnector

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/otel-iforest/iforest/internal/verdict"
)

// Which verdicts become events. Verdicts are datapoint attributes, and any
// client that can send OTLP can set them. By default the connector takes
// only verdicts that an iforest processor of this process issued, as the
// process's incident ledger (internal/verdict) vouches for them:
//
//   - an incident start or end: its id is in the ledger in that state, and
//     this connector has not reported that start or end before;
//   - a flagged datapoint (emit_datapoints, the anomaly rate): it names an
//     incident that is open. Flagged points outside an incident (possible
//     with incidents.open_after > 1 or a cooldown) are therefore not
//     reported, and a copy of a flagged point is only while its incident
//     is open (it adds a detected event to a real incident, nothing more).
//
// With accept_remote_verdicts (the processor runs in another collector)
// the ledger is not asked. Either way a verdict whose score is not a number
// in [0, 1] is no verdict of the processor's.

// reason is why a verdict was not taken (the `reason` attribute of
// verdicts_rejected).
type reason int

const (
	reasonUnverified reason = iota
	reasonRepeated
	reasonMalformed
	reasonNoIncident
	numReasons
)

var reasonLabels = [numReasons]string{"unverified", "repeated", "malformed", "no_incident"}

func reasonOptions() [numReasons]metric.AddOption {
	var opts [numReasons]metric.AddOption
	for r := range opts {
		opts[r] = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", reasonLabels[r])))
	}
	return opts
}

// rejections counts the verdicts of one batch that were not taken.
type rejections [numReasons]int64

// trust decides which verdicts a connector takes.
type trust struct {
	remote bool
	ledger *verdict.Ledger
	reader verdict.Reader // this connector's bit, for starts and ends
}

func newTrust(remote bool, ledger *verdict.Ledger, name string) trust {
	return trust{remote: remote, ledger: ledger, reader: ledger.Reader(name)}
}

// checked is a datapoint's verdict attributes, read and checked once.
type checked struct {
	malformed bool // the score is missing or not a number in [0, 1]
	id        uint64
	hasID     bool // an id attribute is present...
	idOK      bool // ...and well formed
}

func check(attrs pcommon.Map, k *keys) checked {
	var c checked
	if s := number(attrs, k.Score); !s.ok || !validScore(s.v) {
		c.malformed = true
	}
	if v, ok := attrs.Get(k.IncidentID); ok {
		c.hasID = true
		if v.Type() == pcommon.ValueTypeStr {
			c.id, c.idOK = verdict.ParseID(v.Str())
		}
	}
	return c
}

func validScore(s float64) bool { return s >= 0 && s <= 1 } // false for NaN

// start decides on an incident start; ok false says why not.
func (t *trust) start(c checked) (reason, bool) { return t.claim(c, t.reader.ClaimStart) }

// end decides on an incident end.
func (t *trust) end(c checked) (reason, bool) { return t.claim(c, t.reader.ClaimEnd) }

// claim asks the ledger to vouch for a start or an end, unless verdicts
// from elsewhere are trusted as they are.
func (t *trust) claim(c checked, ask func(uint64) verdict.Check) (reason, bool) {
	if c.malformed {
		return reasonMalformed, false
	}
	if t.remote {
		return 0, true
	}
	if !c.idOK {
		return reasonMalformed, false
	}
	return fromCheck(ask(c.id))
}

// flagged decides on a flagged datapoint.
func (t *trust) flagged(c checked) (reason, bool) {
	switch {
	case c.malformed:
		return reasonMalformed, false
	case t.remote:
		return 0, true
	case !c.hasID:
		return reasonNoIncident, false
	case !c.idOK:
		return reasonMalformed, false
	case !t.ledger.IsOpen(c.id):
		return reasonUnverified, false
	}
	return 0, true
}

func fromCheck(c verdict.Check) (reason, bool) {
	switch c {
	case verdict.Vouched:
		return 0, true
	case verdict.Repeated:
		return reasonRepeated, false
	}
	return reasonUnverified, false
}
