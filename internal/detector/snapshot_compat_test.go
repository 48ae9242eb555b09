package detector

import (
	"compress/gzip"
	"io"
	"math"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otel-iforest/iforest/internal/scenario"
)

// testdata/snapshot-v3-fe06261.bin.gz is a snapshot written by commit
// fe06261, before trees were kept as compact words (16-byte nodes then):
// DefaultConfig with 8 trees (refit_interval 8, the default then), mixedFeed of SeedCPU(7, 300, 310, 900, 1200)
// for 400 rows. The binary form of a tree did not change, so it restores,
// and its trees come back as this code builds them: their split ranges
// rounded outwards as a new tree's are, every other field as written. A
// process restarted onto the new encoding keeps its models, with verdicts
// that differ from never having stopped only as much as the rounding moved
// the scores the calibration had seen. The cumulative sum (key 11) is left
// out of the comparison with a fresh model: its rate is a ramp, whose
// incident this code keeps open while the ramp stays away from the level
// it froze (longRun.away), and so learns its first rows differently than
// fe06261 did; it must still restore and score.
func TestRestoresSnapshotOfSixteenByteNodes(t *testing.T) {
	// The cumulative sum's key, and its place in mixedFeed's verdicts.
	const rampKey, rampIndex = 11, 3
	gz, err := os.Open("testdata/snapshot-v3-fe06261.bin.gz")
	require.NoError(t, err)
	defer gz.Close()
	zr, err := gzip.NewReader(gz)
	require.NoError(t, err)
	old, err := io.ReadAll(zr)
	require.NoError(t, err)

	cfg := DefaultConfig()
	cfg.Trees, cfg.RefitInterval = 8, 8 // as written
	rows := scenario.SeedCPU(7, []int{300, 310, 900, 1200})
	feed := mixedFeed(rows)
	const cut = 400

	restored := New(cfg, 0)
	require.NoError(t, restored.RestoreBytes(old))
	require.Equal(t, 8, restored.Len())

	// The same feed, never stopped, under this code.
	fresh := New(cfg, 0)
	for i := range cut {
		feed(fresh, i)
	}
	require.Equal(t, fresh.Len(), restored.Len())
	trees := 0
	for i := range fresh.shards {
		for key, s := range fresh.shards[i].series {
			r := restored.shards[i].series[key]
			require.NotNil(t, r, "model %d", key)
			if key == rampKey {
				continue
			}
			require.Equal(t, s.forest.Len(), r.forest.Len(), "model %d", key)
			for k := range s.forest.Len() {
				require.Equal(t, s.forest.AppendTree(nil, k), r.forest.AppendTree(nil, k), "model %d tree %d", key, k)
				trees++
			}
		}
	}
	require.Greater(t, trees, 8*cfg.Trees/2, "the models have their forests")

	// From there on both score every point; the verdicts agree.
	var scored, anomalies, disagree int
	maxDiff := 0.0
	for i := cut; i < len(rows); i++ {
		want, got := feed(fresh, i), feed(restored, i)
		require.Len(t, got, len(want))
		for j := range want {
			require.Equal(t, want[j].Status, got[j].Status, "row %d model %d", i, j)
			if want[j].Status != Scored || j == rampIndex {
				continue
			}
			scored++
			if want[j].Anomaly {
				anomalies++
			}
			if want[j].Anomaly != got[j].Anomaly {
				disagree++
			}
			maxDiff = math.Max(maxDiff, math.Abs(want[j].Score-got[j].Score))
		}
	}
	t.Logf("%d verdicts, %d anomalies, %d disagree, scores differ by at most %.4f", scored, anomalies, disagree, maxDiff)
	assert.Equal(t, 7*(len(rows)-cut), scored, "no model warms up again")
	assert.Greater(t, anomalies, 10)
	assert.Zero(t, disagree)
	assert.Less(t, maxDiff, 0.01)

	// And it is saved again in the same format.
	again := New(cfg, 0)
	require.NoError(t, again.RestoreBytes(snapshotBytes(t, restored)))
	assert.Equal(t, restored.Len(), again.Len())
}
