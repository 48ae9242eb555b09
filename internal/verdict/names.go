// Package verdict is what the iforest processor and the anomalyevents
// connector agree on: the names of the verdict attributes, the values of the
// incident transition, and a process-wide ledger of the incidents that
// iforest processors in this process issued (see ledger.go), so that the
// connector can tell their verdicts from attributes a client sent.
package verdict // import "github.com/otel-iforest/iforest/internal/verdict"

import (
	"fmt"
	"strconv"
)

// DefaultPrefix is the default of the processor's output.attribute_prefix
// and the connector's attribute_prefix.
const DefaultPrefix = "anomaly."

// Attribute names, after the prefix.
const (
	Score            = "score"
	Detected         = "detected"
	Threshold        = "threshold"
	ExpectedMin      = "expected.min"
	ExpectedMax      = "expected.max"
	Incident         = "incident"
	IncidentID       = "incident.id"
	IncidentDuration = "incident.duration"
	IncidentPeak     = "incident.peak_score"
	Model            = "model"
	TopFeature       = "top_feature"
	Contributions    = "contributions"
)

// Values of the Incident attribute.
const (
	Started = "started"
	Ended   = "ended"
)

// Names are the verdict attributes' full names under one prefix, built once
// so that the walk over datapoints does not concatenate strings.
type Names struct {
	Prefix                                               string
	Score, Detected, Threshold, ExpectedMin, ExpectedMax string
	Incident, IncidentID, IncidentDuration, IncidentPeak string
	Model, TopFeature, Contributions                     string
}

// NewNames returns the names under prefix.
func NewNames(prefix string) Names {
	return Names{
		Prefix:           prefix,
		Score:            prefix + Score,
		Detected:         prefix + Detected,
		Threshold:        prefix + Threshold,
		ExpectedMin:      prefix + ExpectedMin,
		ExpectedMax:      prefix + ExpectedMax,
		Incident:         prefix + Incident,
		IncidentID:       prefix + IncidentID,
		IncidentDuration: prefix + IncidentDuration,
		IncidentPeak:     prefix + IncidentPeak,
		Model:            prefix + Model,
		TopFeature:       prefix + TopFeature,
		Contributions:    prefix + Contributions,
	}
}

// IsVerdict says whether k is one of the verdict attributes' names under
// n's prefix. The processor asks it for every attribute of every datapoint
// it selects: a prefix check first, then a switch on constants (no
// allocation). Attributes of these names are the processor's own; any
// other under the prefix belongs to the data.
func (n *Names) IsVerdict(k string) bool {
	if len(k) <= len(n.Prefix) || k[:len(n.Prefix)] != n.Prefix {
		return false
	}
	switch k[len(n.Prefix):] {
	case Score, Detected, Threshold, ExpectedMin, ExpectedMax,
		Incident, IncidentID, IncidentDuration, IncidentPeak,
		Model, TopFeature, Contributions:
		return true
	}
	return false
}

// FormatID renders an incident id as the processor writes it: 16 hex digits.
func FormatID(id uint64) string {
	return fmt.Sprintf("%016x", id)
}

// ParseID reads an id written by FormatID; anything else is not an id.
func ParseID(s string) (uint64, bool) {
	if len(s) != 16 {
		return 0, false
	}
	id, err := strconv.ParseUint(s, 16, 64)
	return id, err == nil
}
