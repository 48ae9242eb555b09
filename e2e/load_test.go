//go:build e2e

package e2e

import (
	"encoding/json"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// The load tool against the real distribution: what it reports as accepted
// is what the collector exported, every series is there, and after warm-up
// iforest scores the generated series (so `make loadtest` measures a
// pipeline that is really scoring).
func TestLoadToolThroughDistribution(t *testing.T) {
	c := startCollector(t, " {}")
	out, err := exec.Command(replayBin, "--load", "--endpoint", c.endpoint, "--wait", "30s",
		"--series", "50", "--points", "5000", "--batch", "250", "--workers", "5", "--quiet", "--json").Output()
	require.NoError(t, err, "iforest-replay --load")
	var rep struct {
		Accepted int64 `json:"datapoints_accepted"`
		Failed   int64 `json:"datapoints_failed"`
	}
	require.NoError(t, json.Unmarshal(out, &rep), "%s", out)
	require.Equal(t, int64(5000), rep.Accepted)
	require.Zero(t, rep.Failed)

	var total, scored int
	var series map[string]int
	deadline := time.Now().Add(60 * time.Second)
	for {
		total, scored, series = countLoadExport(t, c.outFile)
		if total >= 5000 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.stop(t)
	assert.Equal(t, 5000, total, "datapoints out must equal datapoints accepted")
	assert.Len(t, series, 50)
	// 5 workers with 10 series and 1000 points each: 100 points per series,
	// the first 32 of which warm its model up.
	assert.Equal(t, 50*(100-32), scored)
}

func countLoadExport(t *testing.T, file string) (total, scored int, series map[string]int) {
	series = map[string]int{}
	exportedGauges(t, file, func(_ pmetric.Metric, dp pmetric.NumberDataPoint) {
		total++
		s, _ := dp.Attributes().Get("series")
		series[s.Str()]++
		if _, ok := dp.Attributes().Get("anomaly.score"); ok {
			scored++
		}
	})
	return total, scored, series
}
