package detector

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otel-iforest/iforest/internal/scenario"
)

// mixedFeed returns a function feeding step i of a scenario with every kind
// of model: gauges (spikes in both halves), a cumulative counter, a delta
// sum, cumulative and delta histograms (two inputs, trees with boxes) and a
// joined multivariate model. It returns all verdicts of the step.
func mixedFeed(rows []scenario.Row) func(d *Detector, i int) []Verdict {
	s := int64(time.Second)
	return func(d *Detector, i int) []Verdict {
		r := rows[i]
		t := int64(i+1) * 60 * s
		now := int64(1_700_000_000)*s + t
		var out []Verdict
		for k := uint64(1); k <= 3; k++ {
			out = append(out, d.Observe(Point{Key: k * 1000, Kind: Gauge, Time: t, V0: r.Value + float64(k)}, now))
		}
		total := float64(i*(i+1)/2) + r.Value*10
		out = append(out,
			d.Observe(Point{Key: 11, Kind: CumulativeSum, Start: s, Time: t, V0: total}, now),
			d.Observe(Point{Key: 12, Kind: DeltaSum, Start: t - 60*s, Time: t, V0: r.Value}, now),
			d.Observe(Point{Key: 13, Kind: CumulativeHistogram, Start: s, Time: t, V0: float64(i * 10), V1: total}, now),
			d.Observe(Point{Key: 14, Kind: DeltaHistogram, Start: t - 60*s, Time: t, V0: 10, V1: r.Value * 10}, now),
			d.ObserveMembers(15, 2, []MemberUpdate{{0, t, r.Value}, {1, t - 5*s, 100 - r.Value}}, 2*60*s, now),
		)
		return out
	}
}

func snapshotBytes(t testing.TB, d *Detector) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, d.Snapshot(&buf))
	return buf.Bytes()
}

// Feed half a scenario, snapshot, restore into a new detector, feed the
// other half to both: every verdict is the same, bit for bit (scores,
// thresholds, expected bands, contributions, incident ids and transitions).
func TestSnapshotResumesExactly(t *testing.T) {
	for _, contamination := range []float64{0, 0.02} {
		cfg := DefaultConfig()
		cfg.Contamination = contamination
		rows := scenario.SeedCPU(7, []int{300, 310, 900, 1200})
		feed := mixedFeed(rows)
		half := 720

		orig := New(cfg, 0)
		for i := range half {
			feed(orig, i)
		}
		snap := snapshotBytes(t, orig)
		restored := New(cfg, 0)
		require.NoError(t, restored.RestoreBytes(snap))
		require.Equal(t, orig.Len(), restored.Len())
		// The restored state is the state: it snapshots to the same bytes.
		require.Equal(t, snap, snapshotBytes(t, restored))

		var scored, anomalies, incidents int
		for i := half; i < len(rows); i++ {
			want, got := feed(orig, i), feed(restored, i)
			require.Equal(t, want, got, "contamination %v, row %d", contamination, i)
			for _, v := range want {
				if v.Status == Scored {
					scored++
				}
				if v.Anomaly {
					anomalies++
				}
				if v.Incident == Started {
					incidents++
				}
			}
		}
		// The comparison is not vacuous: the second half is scored at once
		// (no new warm-up) and has anomalies and incidents.
		assert.Equal(t, 8*(len(rows)-half), scored, "contamination %v", contamination)
		assert.Greater(t, anomalies, 10)
		assert.Greater(t, incidents, 2)
		require.Equal(t, snapshotBytes(t, orig), snapshotBytes(t, restored))
	}
}

// A snapshot taken mid warm-up (partial forests, windows not full) resumes
// exactly too.
func TestSnapshotDuringWarmup(t *testing.T) {
	rows := scenario.SeedCPU(3, nil)
	feed := mixedFeed(rows)
	cfg := DefaultConfig()
	for _, cut := range []int{0, 1, 5, 9, 20, 33} {
		orig := New(cfg, 0)
		for i := range cut {
			feed(orig, i)
		}
		restored := New(cfg, 0)
		require.NoError(t, restored.RestoreBytes(snapshotBytes(t, orig)))
		for i := cut; i < cut+80; i++ {
			require.Equal(t, feed(orig, i), feed(restored, i), "cut %d row %d", cut, i)
		}
	}
}

func TestRestoreCountsModelsAndKeepsLimit(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Shards = 2
	src := New(cfg, 0)
	for k := uint64(0); k < 10; k++ {
		src.Observe(gaugeAt(k, 0, 1), int64(100+k))
	}
	snap := snapshotBytes(t, src)

	d := New(cfg, 0)
	d.Observe(gaugeAt(99, 0, 1), 1)
	d.TakeStats()
	require.NoError(t, d.RestoreBytes(snap))
	assert.Equal(t, 10, d.Len())
	// The series gauge follows: +10 restored, -1 replaced.
	assert.Equal(t, int64(9), d.TakeStats().Created)

	// With a limit of 6 the 6 most recently seen models stay, however
	// they fall into shards.
	lim := New(cfg, 6)
	require.NoError(t, lim.RestoreBytes(snap))
	assert.Equal(t, 6, lim.Len())
	for k := uint64(0); k < 10; k++ {
		assert.Equal(t, k >= 4, lim.shards[k%2].series[k] != nil, "key %d", k)
	}
	assert.Equal(t, Warmup, lim.Observe(gaugeAt(4, 1, 1), 200).Status)
	assert.Equal(t, OverLimit, lim.Observe(gaugeAt(100, 1, 1), 200).Status, "the limit holds after a restore")
}

func smallSnapshot(t testing.TB) (Config, []byte) {
	cfg := DefaultConfig()
	cfg.Trees, cfg.SampleSize, cfg.WindowSize, cfg.Warmup, cfg.RefitInterval, cfg.Contamination = 2, 4, 8, 8, 3, 0.1
	cfg.Shards, cfg.Lookback = 2, 3
	d := New(cfg, 0)
	rows := scenario.SeedCPU(1, []int{15})
	feed := mixedFeed(rows)
	// Past the window's size, so the rings have wrapped.
	for i := range 12 {
		feed(d, i)
	}
	return cfg, snapshotBytes(t, d)
}

// reseal recomputes the checksum, so that damage gets past it and reaches
// the validation of decoded values, as a crafted snapshot would.
func reseal(b []byte) []byte {
	if len(b) < 8 {
		return b
	}
	b = bytes.Clone(b)
	binary.LittleEndian.PutUint64(b[len(b)-8:], crc64.Checksum(b[:len(b)-8], crcTable))
	return b
}

// exercise uses a restored detector on every kind of input.
func exercise(d *Detector, from int) {
	rows := scenario.SeedCPU(9, []int{from + 1})
	feed := mixedFeed(rows)
	for i := from; i < from+4 && i < len(rows); i++ {
		feed(d, i)
	}
	var buf bytes.Buffer
	_ = d.Snapshot(&buf)
	d.Evict(math.MaxInt64)
}

func TestRestoreRejectsTruncated(t *testing.T) {
	cfg, snap := smallSnapshot(t)
	t.Logf("snapshot of 8 small models: %d bytes", len(snap))
	d := New(cfg, 0)
	for i := range len(snap) {
		err := d.RestoreBytes(snap[:i])
		require.ErrorIs(t, err, ErrSnapshotCorrupt, "truncated at %d", i)
		require.Equal(t, 0, d.Len(), "a failed restore must change nothing")
	}
	// And with trailing bytes.
	require.ErrorIs(t, d.RestoreBytes(append(bytes.Clone(snap), 0)), ErrSnapshotCorrupt)
	require.NoError(t, d.RestoreBytes(snap))
}

func TestRestoreRejectsFlippedBytes(t *testing.T) {
	cfg, snap := smallSnapshot(t)
	stride := 1
	if testing.Short() {
		stride = 3
	}
	for i := 0; i < len(snap); i += stride {
		for _, mask := range []byte{0x01, 0x80, 0xFF} {
			b := bytes.Clone(snap)
			b[i] ^= mask
			d := New(cfg, 0)
			d.Observe(gaugeAt(42, 0, 1), 0)
			err := d.RestoreBytes(b)
			require.Error(t, err, "byte %d ^ %#x", i, mask)
			require.Equal(t, 1, d.Len(), "a failed restore must change nothing")
		}
	}
}

// With the checksum recomputed, every single-byte change either is rejected
// by validation or yields a detector that works: no panic, no out-of-range
// read in the scoring kernels.
func TestRestoreValidatesResealed(t *testing.T) {
	cfg, snap := smallSnapshot(t)
	rejected := 0
	masks := []byte{0x01, 0x80, 0xFF}
	stride := 1
	if testing.Short() {
		masks, stride = masks[:1], 3
	}
	for i := 0; i < len(snap)-8; i += stride {
		for _, mask := range masks {
			b := bytes.Clone(snap)
			b[i] ^= mask
			d := New(cfg, 0)
			if err := d.RestoreBytes(reseal(b)); err != nil {
				rejected++
				require.Equal(t, 0, d.Len())
				continue
			}
			exercise(d, 12)
		}
	}
	// Most bytes are floats (window values, ranges, thresholds) any value
	// of which is valid; the structure around them is what gets rejected.
	t.Logf("%d of %d resealed mutations rejected by validation", rejected, len(masks)*(len(snap)-8)/stride)
	total := len(masks) * ((len(snap) - 8 + stride - 1) / stride)
	assert.Positive(t, rejected)
	assert.Less(t, rejected, total, "some mutations are valid snapshots, and were exercised")
}

func TestRestoreRejectsOtherConfig(t *testing.T) {
	cfg, snap := smallSnapshot(t)
	for name, change := range map[string]func(*Config){
		"sample_size was 4, now 16":                   func(c *Config) { c.SampleSize = 16 },
		"window_size was 8, now 13":                   func(c *Config) { c.WindowSize = 13 },
		"warmup was 8, now 9":                         func(c *Config) { c.Warmup = 9 },
		"seed was 1, now 2":                           func(c *Config) { c.Seed = 2 },
		"contamination > 0 was true, now false":       func(c *Config) { c.Contamination = 0 },
		"lookback was 3, now 0":                       func(c *Config) { c.Lookback = 0 },
		"window_size was 8, now 9, seed was 1, now 7": func(c *Config) { c.WindowSize, c.Seed = 9, 7 },
		"warmup was 8, now 9, seed was 1, now 7":      func(c *Config) { c.Trees, c.Warmup, c.Seed = 5, 9, 7 },
	} {
		c := cfg
		change(&c)
		err := New(c, 0).RestoreBytes(snap)
		require.ErrorIs(t, err, ErrSnapshotIncompatible, name)
		assert.Contains(t, err.Error(), name)
	}
	// What only changes how verdicts are read may change, and the forest's
	// size and refit pace (TestRestoreReshapesForests).
	c := cfg
	c.Threshold, c.Contamination, c.Shards = 0.7, 0.05, 7
	c.Incidents.CloseAfter, c.Incidents.OpenWindow = 2, 1
	c.Trees, c.RefitInterval = 4, 2
	d := New(c, 0)
	require.NoError(t, d.RestoreBytes(snap))
	exercise(d, 12)

	// Another format version is named as such.
	b := bytes.Clone(snap)
	binary.LittleEndian.PutUint16(b[8:], 1)
	err := New(cfg, 0).RestoreBytes(b)
	require.ErrorIs(t, err, ErrSnapshotIncompatible)
	assert.Contains(t, err.Error(), "format version 1")
	// Not a snapshot at all.
	err = New(cfg, 0).RestoreBytes([]byte("{\"hello\": 1}"))
	require.ErrorIs(t, err, ErrSnapshotCorrupt)
	assert.Contains(t, err.Error(), "not an iforest detector snapshot")
}

// The trees and refit_interval a snapshot says it was taken with bound what
// its models may hold: impossible values, or models with more trees or a
// later refit position than they allow, are damage, never a panic.
func TestRestoreRejectsImpossibleForestShape(t *testing.T) {
	cfg, snap := smallSnapshot(t) // 2 trees, refit every 3
	field := func(i int, v uint64) []byte {
		b := bytes.Clone(snap)
		binary.LittleEndian.PutUint64(b[headerFixed+8*i:], v)
		return reseal(b)
	}
	const trees, refit = 0, 4 // fingerprint positions
	for _, b := range [][]byte{
		field(trees, 0), field(trees, maxSnapshotTrees+1), field(trees, math.MaxUint64),
		field(refit, 0),
		field(trees, 1),                // its models hold 2 trees
		field(trees, maxSnapshotTrees), // a growing forest is never mid-refit
		field(refit, 1),                // its models are at refit positions up to 2
	} {
		d := New(cfg, 0)
		require.ErrorIs(t, d.RestoreBytes(b), ErrSnapshotCorrupt)
		require.Equal(t, 0, d.Len(), "a failed restore changes nothing")
	}
	// A detector with more trees than the processor allows restores its own.
	many := cfg
	many.Trees = maxSnapshotTrees + 1
	require.NoError(t, New(many, 0).RestoreBytes(snapshotBytes(t, New(many, 0))))
	// A larger refit_interval is possible: restored, and refits at cfg's.
	d := New(cfg, 0)
	require.NoError(t, d.RestoreBytes(field(refit, math.MaxInt32)))
	exercise(d, 12)
}

// A half hour being filled beyond any timestamp's would store its mean
// under a day number that does not fit the rows, and the next snapshot
// would not restore: a snapshot with one is damaged.
func TestRestoreRejectsHalfHourOutOfRange(t *testing.T) {
	lr := newLongRun()
	lr.season.slot, lr.season.n = maxSlot, 1
	_, err := decodeLongRun(&reader{b: appendLongRun(nil, lr), version: snapshotVersion}, true)
	require.NoError(t, err)
	for _, slot := range []int64{maxSlot + 1, math.MaxInt32*daySlots*3 + 5*daySlots + 7} {
		lr.season.slot = slot
		_, err = decodeLongRun(&reader{b: appendLongRun(nil, lr), version: snapshotVersion}, true)
		require.ErrorIs(t, err, ErrSnapshotCorrupt, "half hour %d", slot)
	}
}

// The half hours' usual residuals round-trip, damaged ones are rejected,
// and a version 5 snapshot, which ends before them, reads with none.
func TestRestoreHalfHourSpreads(t *testing.T) {
	lr := newLongRun()
	for i := range lr.slotSpread {
		lr.slotSpread[i], lr.slotN[i] = float32(i)/3, uint8(min(i*2, slotMinPoints))
	}
	lr.slotSpread[1] = math.MaxFloat32 // the most learnSlot can store
	b := appendLongRun(nil, lr)
	got, err := decodeLongRun(&reader{b: b, version: snapshotVersion}, true)
	require.NoError(t, err)
	assert.Equal(t, lr.slotSpread, got.slotSpread)
	assert.Equal(t, lr.slotN, got.slotN)

	v5 := b[:len(b)-5*daySlots]
	got, err = decodeLongRun(&reader{b: v5, version: snapshotV5}, true)
	require.NoError(t, err)
	assert.Equal(t, [daySlots]uint8{}, got.slotN, "none learned: the scale is 1 until they are")

	for _, bad := range []func(*longRun){
		func(l *longRun) { l.slotSpread[3] = -1 },
		func(l *longRun) { l.slotSpread[3] = float32(math.NaN()) },
		func(l *longRun) { l.slotSpread[3] = float32(math.Inf(1)) },
		func(l *longRun) { l.slotN[3] = slotMinPoints + 1 },
	} {
		l := newLongRun()
		bad(l)
		_, err := decodeLongRun(&reader{b: appendLongRun(nil, l), version: snapshotVersion}, true)
		require.ErrorIs(t, err, ErrSnapshotCorrupt)
	}
}

// A sender's run of values near float64's limit, held as an incident and
// then accepted as a new normal, leaves a state that snapshots and
// restores: the held points' sum stays finite, so no NaN reaches the level
// or the window.
func TestHugeValuesKeepTheSnapshotRestorable(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	d := New(DefaultConfig(), 0)
	feedAt(d, 1, monday, time.Minute, 3000, func(t time.Time) float64 {
		if t.Sub(monday) >= 2900*time.Minute {
			return 1e308
		}
		return 50 + rng.NormFloat64()
	})
	restored := New(DefaultConfig(), 0)
	require.NoError(t, restored.RestoreBytes(snapshotBytes(t, d)))
	assert.Equal(t, 1, restored.Len())
}

// The same at five minutes with a daily cycle in use, the spike landing
// in a half hour's first point: the half hour takes it in at most
// levelBound usual residuals out, and the snapshot restores.
func TestHugeValueInAHalfHourKeepsTheSnapshotRestorable(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	d := New(DefaultConfig(), 0)
	spike := monday.Add(12*24*time.Hour + 2*time.Hour)
	feedAt(d, 1, monday, 5*time.Minute, 13*288, func(t time.Time) float64 {
		if t.Equal(spike) {
			return 1e308
		}
		h := float64(t.Hour()) + float64(t.Minute())/60
		return 100 + 50*math.Sin(2*math.Pi*h/24) + rng.NormFloat64()
	})
	lr := d.shards[1%uint64(len(d.shards))].series[1].lr
	require.NotEqual(t, uint8(predLevel), lr.season.used, "a cycle in use")
	i := slotOf(spike.UnixNano())
	require.Positive(t, lr.slotN[i], "the spike's half hour learned")
	assert.Less(t, float64(lr.slotSpread[i]), 1e6)
	restored := New(DefaultConfig(), 0)
	require.NoError(t, restored.RestoreBytes(snapshotBytes(t, d)))
	assert.Equal(t, 1, restored.Len())
}

// A snapshot taken with other trees or refit_interval (a changed setting,
// or changed defaults) restores: each model keeps its newest trees, oldest
// first, and a forest with fewer than trees grows as a new model's does.
func TestRestoreReshapesForests(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Trees, cfg.RefitInterval = 8, 3
	rows := scenario.SeedCPU(3, []int{250})
	feed := mixedFeed(rows)
	old := New(cfg, 0)
	for i := range 200 { // past warm-up and several turnovers
		feed(old, i)
	}
	snap := snapshotBytes(t, old)

	// newest lists a model's trees' binary forms from the newest back.
	newest := func(s *series, n int) [][]byte {
		var out [][]byte
		k := s.forest.Len()
		for i := range min(n, k) {
			out = append(out, s.forest.AppendTree(nil, (s.nextTree-1-i+2*k)%k))
		}
		return out
	}
	for _, c := range []struct{ trees, refit int }{{5, 7}, {8, 1}, {12, 3}} {
		to := cfg
		to.Trees, to.RefitInterval = c.trees, c.refit
		d := New(to, 0)
		require.NoError(t, d.RestoreBytes(snap), "%d trees every %d", c.trees, c.refit)
		require.Equal(t, old.Len(), d.Len())
		models := 0
		for i := range old.shards {
			for key, s := range old.shards[i].series {
				r := d.shards[i].series[key]
				require.NotNil(t, r)
				if s.forest == nil {
					continue
				}
				models++
				require.Equal(t, min(s.forest.Len(), c.trees), r.forest.Len(), "model %d", key)
				if r.forest.Len() == c.trees { // full: the oldest is rebuilt next
					require.Equal(t, 0, r.nextTree)
					require.Less(t, r.toRefit, c.refit)
				}
				// The same trees, the newest kept; restored oldest first.
				var got [][]byte
				for k := r.forest.Len() - 1; k >= 0; k-- {
					got = append(got, r.forest.AppendTree(nil, k))
				}
				require.Equal(t, newest(s, c.trees), got, "model %d", key)
			}
		}
		require.Positive(t, models)
		// It goes on learning: refits at the new pace, a small forest grows.
		for i := 200; i < 250; i++ {
			for _, v := range feed(d, i) {
				require.False(t, math.IsNaN(v.Score))
			}
		}
		for i := range d.shards {
			for key, s := range d.shards[i].series {
				if s.forest != nil {
					require.Equal(t, c.trees, s.forest.Len(), "model %d after 50 points", key)
				}
			}
		}
	}
}

func TestRestoreErrorsAreClear(t *testing.T) {
	cfg, snap := smallSnapshot(t)
	b := bytes.Clone(snap)
	b[len(b)/2] ^= 4
	err := New(cfg, 0).RestoreBytes(b)
	assert.Contains(t, err.Error(), "checksum mismatch")
	err = New(cfg, 0).RestoreBytes(snap[:len(snap)/2])
	assert.Contains(t, err.Error(), "snapshot is corrupt")
}

// RestoreFrom decodes a snapshot as it is read: in pieces of any size and
// from a reader that holds more after it (of which it reads nothing). A
// failing reader is reported as itself, not as a corrupt snapshot, and
// changes nothing.
func TestRestoreFromStream(t *testing.T) {
	cfg, snap := smallSnapshot(t)
	r := io.MultiReader(iotest.OneByteReader(bytes.NewReader(snap)), strings.NewReader("next"))
	d := New(cfg, 0)
	require.NoError(t, d.RestoreFrom(r, int64(len(snap))))
	assert.Equal(t, 8, d.Len())
	assert.Equal(t, snap, snapshotBytes(t, d), "the same state")
	rest, err := io.ReadAll(r)
	require.NoError(t, err)
	assert.Equal(t, "next", string(rest))

	boom := errors.New("disk on fire")
	for _, at := range []int{0, 5, len(snap) / 2, len(snap) - 3} {
		d := New(cfg, 0)
		d.Observe(gaugeAt(42, 0, 1), 0)
		err := d.RestoreFrom(io.MultiReader(bytes.NewReader(snap[:at]), iotest.ErrReader(boom)), int64(len(snap)))
		require.ErrorIs(t, err, boom, "failing at %d", at)
		require.NotErrorIs(t, err, ErrSnapshotCorrupt)
		require.Equal(t, 1, d.Len(), "a failed restore must change nothing")
	}
	// A reader shorter than size: truncated.
	err = New(cfg, 0).RestoreFrom(bytes.NewReader(snap[:len(snap)-1]), int64(len(snap)))
	require.ErrorIs(t, err, ErrSnapshotCorrupt)
}

func TestEmptySnapshot(t *testing.T) {
	cfg := DefaultConfig()
	snap := snapshotBytes(t, New(cfg, 0))
	assert.Len(t, snap, headerFixed+8*len(fingerprint(&cfg))+trailerLen)
	d := New(cfg, 0)
	require.NoError(t, d.RestoreBytes(snap))
	assert.Equal(t, 0, d.Len())
}

// Every field of series must be in the snapshot. A new field fails this
// test until appendSeries and decodeSeries handle it and the list below
// names it.
func TestSnapshotCoversSeries(t *testing.T) {
	var names []string
	typ := reflect.TypeFor[series]()
	for i := range typ.NumField() {
		names = append(names, typ.Field(i).Name)
	}
	// key is the record's key; prev, next (the recency lists) and bytes
	// are rebuilt on restore; interval is learnt again.
	assert.Equal(t, []string{
		"rate", "kind", "dims", "fdims", "key", "lastSeen", "prev", "next", "interval", "bytes", "win", "head", "rows", "learned",
		"forest", "nextTree", "toRefit", "pcg", "rng", "quant", "lr", "inc", "rep", "lo", "hi", "nlo", "nhi", "members",
	}, names, "series changed: update snapshot.go (and its format version) first")
	// pred, predOK, base and value belong to the point being judged.
	assert.Equal(t, 22, reflect.TypeFor[longRun]().NumField(), "longRun changed: update snapshot_longrun.go")
	// pslot, pp and pok are a cache of predictions, rebuilt at the next point.
	assert.Equal(t, 12, reflect.TypeFor[season]().NumField(), "season changed: update snapshot_longrun.go")
	assert.Equal(t, 5, reflect.TypeFor[dayRow]().NumField(), "dayRow changed: update snapshot_longrun.go")
	// body is a cache, reset on restore.
	assert.Equal(t, 10, reflect.TypeFor[calibrator]().NumField(), "calibrator changed: update snapshot_longrun.go")
	assert.Equal(t, 8, reflect.TypeFor[rateState]().NumField(), "rateState changed: update snapshot.go")
	assert.Equal(t, 7, reflect.TypeFor[incident]().NumField(), "incident changed: update snapshot.go")
	assert.Equal(t, 5, reflect.TypeFor[scoreQuantile]().NumField(), "scoreQuantile changed: update snapshot.go")
	assert.Equal(t, 3, reflect.TypeFor[member]().NumField(), "member changed: update snapshot.go")
}

// FuzzRestore: no input makes Restore panic; an accepted snapshot gives a
// detector that works. Each input is tried as is and resealed (checksum
// recomputed), so that the fuzzer reaches the validation of decoded values.
func FuzzRestore(f *testing.F) {
	cfg, snap := smallSnapshot(f)
	f.Add(snap)
	f.Add(snap[:len(snap)/3])
	for _, i := range []int{9, 20, 80, 81, 200, len(snap) / 2, len(snap) - 12} {
		b := bytes.Clone(snap)
		b[i] ^= 0x5A
		f.Add(b)
	}
	f.Add(snapshotBytes(f, New(cfg, 0)))
	f.Add([]byte{})
	f.Add(snapshotMagic[:])
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, in := range [][]byte{b, reseal(b)} {
			d := New(cfg, 0)
			if err := d.RestoreBytes(in); err != nil {
				if d.Len() != 0 {
					t.Fatalf("failed restore left %d models", d.Len())
				}
				continue
			}
			exercise(d, 12)
		}
	})
}

// BenchmarkSnapshot measures a snapshot and a restore of n models with
// full windows and forests (default settings).
func BenchmarkSnapshot(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		cfg := DefaultConfig()
		d := New(cfg, 0)
		rows := scenario.SeedCPU(1, nil)
		for i := range cfg.WindowSize {
			for k := range n {
				d.Observe(gaugeAt(uint64(k), i, rows[i].Value+float64(k%7)), 0)
			}
		}
		snap := snapshotBytes(b, d)
		b.Run("snapshot/series="+strconv.Itoa(n), func(b *testing.B) {
			b.SetBytes(int64(len(snap)))
			var buf bytes.Buffer
			buf.Grow(len(snap))
			for b.Loop() {
				buf.Reset()
				if err := d.Snapshot(&buf); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(snap))/float64(n), "B/series")
		})
		b.Run("restore/series="+strconv.Itoa(n), func(b *testing.B) {
			b.SetBytes(int64(len(snap)))
			for b.Loop() {
				if err := New(cfg, 0).RestoreBytes(snap); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A restored detector has its recency lists and memory estimate back: the
// limit evicts its least recently seen models and idle eviction finds them.
func TestRestoreRebuildsRecencyAndMemory(t *testing.T) {
	cfg, snap := smallSnapshot(t)
	d := New(cfg, 0)
	require.NoError(t, d.RestoreBytes(snap))
	var want int64
	n := 0
	for i := range d.shards {
		sh := &d.shards[i]
		listed := 0
		for _, l := range []*recency{&sh.unknown, &sh.known} {
			for s := l.head; s != nil; s = s.next {
				require.Same(t, sh.series[s.key], s)
				if s.next != nil {
					require.GreaterOrEqual(t, s.lastSeen, s.next.lastSeen, "most recent first")
				}
				listed++
			}
		}
		require.Equal(t, len(sh.series), listed)
		for _, s := range sh.series {
			want += int64(s.memBytes())
		}
		n += len(sh.series)
	}
	require.Positive(t, n)
	assert.Equal(t, want+d.fixed, d.MemoryBytes())
	assert.Equal(t, n, d.Evict(1<<62))
	assert.Equal(t, d.fixed, d.MemoryBytes())
}

// A day in a row of the time context other than its own would be read as
// another day by a prediction, and two rows holding one day (formats 3 and
// 4) twice: a snapshot with them is damaged.
func TestRestoreRejectsRepeatedDays(t *testing.T) {
	const monday = 19996 // (19996+3) % 7 == 0: a Monday
	lr := newLongRun()
	lr.season.day[monday%keepDays].clear(monday)
	lr.season.day[(monday+1)%keepDays].clear(monday + 1)
	_, err := decodeLongRun(&reader{b: appendLongRun(nil, lr), version: snapshotVersion}, true)
	require.NoError(t, err)
	lr.season.day[(monday+1)%keepDays].clear(monday)
	_, err = decodeLongRun(&reader{b: appendLongRun(nil, lr), version: snapshotVersion}, true)
	require.ErrorIs(t, err, ErrSnapshotCorrupt)
	assert.ErrorContains(t, err, fmt.Sprintf("day %d in row %d", monday, (monday+1)%keepDays))

	// Format 4: four weekday rows, then four weekend rows, then the rest
	// as format 5 writes it. They are read into the ring by their days.
	const rowBytes = 4 + 4 + 1 + 1 + 2*daySlots
	rest := appendLongRun(nil, newLongRun())[1+keepDays*rowBytes:]
	v4 := func(days ...int32) []byte {
		b := []byte{1}
		for _, d := range days {
			b = binary.LittleEndian.AppendUint32(b, uint32(d))
			b = append(b, 0, 0, 0, 0, 0, 0) // base 0, scale 2^0, unused
			for range daySlots {
				b = binary.LittleEndian.AppendUint16(b, noHalf)
			}
		}
		return append(b, rest...)
	}
	got, err := decodeLongRun(&reader{b: v4(monday, monday+1, -1, -1, monday+5, -1, -1, -1), version: snapshotV4}, true)
	require.NoError(t, err)
	for _, d := range []int32{monday, monday + 1, monday + 5} {
		assert.Equal(t, d, got.season.day[d%keepDays].no)
	}
	_, err = decodeLongRun(&reader{b: v4(monday, monday, -1, -1, -1, -1, -1, -1), version: snapshotV4}, true)
	require.ErrorIs(t, err, ErrSnapshotCorrupt)
	assert.ErrorContains(t, err, "rows 0 and 1")

	le := binary.LittleEndian
	v3 := []byte{1}
	for range 9 * daySlots {
		v3 = le.AppendUint32(v3, math.Float32bits(float32(math.NaN())))
	}
	for _, d := range []int32{monday, monday, -1, -1, -1, -1, -1, -1, -1} {
		v3 = le.AppendUint32(v3, uint32(d))
	}
	_, err = decodeLongRun(&reader{b: v3, version: snapshotV3}, true)
	require.ErrorIs(t, err, ErrSnapshotCorrupt)
	assert.ErrorContains(t, err, "two rows")
}
