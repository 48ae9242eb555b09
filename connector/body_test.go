package anomalyeventsconnector

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/collector/pdata/pcommon"
)

func TestFormatNumber(t *testing.T) {
	for v, want := range map[float64]string{
		0:           "0",
		0.93:        "0.93",
		0.1812:      "0.181",
		0.5:         "0.5",
		1:           "1",
		12.345:      "12.3",
		-12.345:     "-12.3",
		120:         "120",
		4096:        "4096",
		123456.7:    "123457",
		999999:      "999999",
		1e6:         "1e+06",
		8589934592:  "8.59e+09",
		0.001234:    "0.00123",
		0.0001234:   "0.000123",
		-0.0004:     "-0.0004",
		0.00001:     "1e-05",
		math.Inf(1): "+Inf",
		math.NaN():  "NaN",
		-0.0001:     "-0.0001",
		100.4:       "100",
		99.96:       "100",
		0.0999999:   "0.1",
		2.5e-7:      "2.5e-07",
	} {
		assert.Equal(t, want, formatNumber(v), "%v", v)
	}
}

func TestFormatSeconds(t *testing.T) {
	for s, want := range map[float64]string{
		300:     "5m0s",
		95.5:    "1m36s",
		3723.4:  "1h2m3s",
		0.25:    "250ms",
		0:       "0s",
		1e300:   "1e+300s",
		-1:      "-1s",
		86400.0: "24h0m0s",
	} {
		assert.Equal(t, want, formatSeconds(s), "%v", s)
	}
}

func TestFormatRange(t *testing.T) {
	assert.Equal(t, "0.18-0.52", formatRange(0.18, 0.52))
	assert.Equal(t, "-3 to 2", formatRange(-3, 2))
	assert.Equal(t, "-3 to -1.5", formatRange(-3, -1.5))
}

func TestBodiesWithMissingParts(t *testing.T) {
	attrs := pcommon.NewMap()
	attrs.PutStr("anomaly.incident", "started")
	assert.Equal(t, "up is anomalous", anomalousBody("up", point{attrs: attrs}, "anomaly.", verdictView{}))
	assert.Equal(t, "up = 1 is anomalous (score 0.90)",
		anomalousBody("up", point{attrs: attrs, value: 1, hasValue: true}, "anomaly.", verdictView{score: opt{0.9, true}}))
	// Only one side of the range: no range.
	assert.Equal(t, "up = 1 is anomalous (score 0.90 >= 0.80)",
		anomalousBody("up", point{attrs: attrs, value: 1, hasValue: true}, "anomaly.",
			verdictView{score: opt{0.9, true}, threshold: opt{0.8, true}, expectedMin: opt{0, true}}))
	// A value inside its band was flagged for its context.
	band := verdictView{score: opt{0.9, true}, threshold: opt{0.8, true}, expectedMin: opt{0.745, true}, expectedMax: opt{1, true}}
	assert.Equal(t, "free = 0.799 is anomalous (score 0.90 >= 0.80; unusual in context; its value is within normal 0.745-1)",
		anomalousBody("free", point{attrs: attrs, value: 0.799, hasValue: true}, "anomaly.", band))
	assert.Equal(t, "free = 0.5 is anomalous (score 0.90 >= 0.80; normal 0.745-1)",
		anomalousBody("free", point{attrs: attrs, value: 0.5, hasValue: true}, "anomaly.", band))
	// A histogram without sum has a count and no mean.
	assert.Equal(t, "h = count 0 is anomalous", anomalousBody("h", point{attrs: attrs, hasCount: true}, "anomaly.", verdictView{}))
	assert.Equal(t, "up is back to normal", endedBody("up", attrs, "anomaly.", verdictView{}))

	// Attribute values of every type, sorted by key.
	attrs.PutInt("i", -3)
	attrs.PutBool("b", false)
	attrs.PutDouble("d", 1.0/3)
	attrs.PutEmptySlice("s").AppendEmpty().SetStr("x")
	attrs.PutStr("a", "")
	assert.Equal(t, `m{a=,b=false,d=0.333,i=-3,s=["x"]} is back to normal after 1s`,
		endedBody("m", attrs, "anomaly.", verdictView{duration: opt{1, true}}))
}
