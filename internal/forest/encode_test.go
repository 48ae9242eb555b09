package forest

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func encodeTree(t testing.TB, tr *Tree) []byte {
	b, err := tr.AppendBinary(nil)
	require.NoError(t, err)
	return b
}

// A tree from Build decodes to the identical tree: same node slice, depth,
// normaliser, hence the same scores bit for bit.
func TestEncodeTreeRoundTrip(t *testing.T) {
	for _, c := range []struct{ rows, dims int }{{1, 1}, {2, 1}, {3, 2}, {32, 1}, {64, 3}, {256, 1}, {256, 4}, {300, 300}, {4096, 2}} {
		data := gaussData(c.rows, c.dims, uint64(c.rows*7+c.dims))
		b := NewBuilder(c.dims)
		rng := rand.New(rand.NewPCG(uint64(c.rows), 3))
		for i := range 6 {
			b.KeepBoxes(i >= 3)
			tr := b.Build(data, rng)
			enc := encodeTree(t, tr)
			got, n, err := DecodeTree(append(enc, 0xAB, 0xCD), c.dims)
			require.NoError(t, err, "rows=%d dims=%d", c.rows, c.dims)
			require.Equal(t, len(enc), n, "bytes used")
			require.Equal(t, tr, got, "rows=%d dims=%d", c.rows, c.dims)
		}
	}
}

// Imported trees (unbounded ranges) come back as they were, scoring the
// same.
func TestEncodeImportedTree(t *testing.T) {
	data := gaussData(1000, 2, 5)
	f := Fit(data, 2, Options{Trees: 10, SampleSize: 128, Seed: 1})
	var orig, dec []*Tree
	for _, tr := range f.Trees() {
		ft, th, l, r, s := sklearnArrays(tr)
		it, err := ImportTree(ft, th, l, r, s, 128)
		require.NoError(t, err)
		got, _, err := DecodeTree(encodeTree(t, it), 2)
		require.NoError(t, err)
		assert.Equal(t, 128, checkShape(t, got, 7))
		orig, dec = append(orig, it), append(dec, got)
	}
	a, b := New(2, orig), New(2, dec)
	x := make([]float64, 2)
	for i := range 1000 {
		x[0], x[1] = float64(data[2*i])*1.7, float64(data[2*i+1])
		require.Equal(t, a.Score(x), b.Score(x))
		require.Equal(t, a.ScoreAsInserted(x), b.ScoreAsInserted(x))
	}
}

func TestDecodeTreeTruncated(t *testing.T) {
	tr := NewBuilder(2).Build(gaussData(64, 2, 1), rand.New(rand.NewPCG(1, 1)))
	enc := encodeTree(t, tr)
	for i := range len(enc) {
		_, _, err := DecodeTree(enc[:i], 2)
		require.ErrorIs(t, err, ErrCorruptTree, "truncated at %d of %d", i, len(enc))
	}
}

// handmade trees, in the encoded form, for the rejections.
func leafBytes(count uint16) []byte {
	b := binary.LittleEndian.AppendUint16(binary.LittleEndian.AppendUint16(nil, 0xFFFF), count)
	return append(b, f32s(float32(math.Inf(-1)), float32(math.Inf(1)))...)
}

func splitBytes(feat uint16, thr, lo, hi float32) []byte {
	b := binary.LittleEndian.AppendUint16(nil, feat)
	for _, v := range []float32{thr, lo, hi} {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func f32s(vs ...float32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func treeBytes(psi, n uint64, parts ...[]byte) []byte {
	b := binary.AppendUvarint(nil, psi)
	b = binary.AppendUvarint(b, n)
	b = append(b, 0) // flags
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func TestDecodeTreeRejects(t *testing.T) {
	ok := treeBytes(2, 3, splitBytes(0, 1, 1, 2), leafBytes(1), leafBytes(1))
	tr, n, err := DecodeTree(ok, 1)
	require.NoError(t, err)
	require.Equal(t, len(ok), n)
	assert.Equal(t, 2, checkShape(t, tr, 1))

	negZero := math.Float32frombits(1 << 31)
	for name, c := range map[string]struct {
		b    []byte
		dims int
		want string
	}{
		"psi 0":             {treeBytes(0, 1, leafBytes(0)), 1, "sample size 0"},
		"psi too large":     {treeBytes(MaxSampleSize+1, 1, leafBytes(1)), 1, "sample size"},
		"no nodes":          {treeBytes(2, 0), 1, "0 nodes"},
		"too many nodes":    {treeBytes(2, 4, splitBytes(0, 1, 1, 2), leafBytes(1), leafBytes(1)), 1, "4 nodes"},
		"fewer nodes":       {treeBytes(4, 5, splitBytes(0, 1, 1, 2), leafBytes(2), leafBytes(2), make([]byte, 30)), 1, "header says 5 nodes, found 3"},
		"more nodes":        {treeBytes(4, 3, splitBytes(0, 1, 1, 2), leafBytes(2), splitBytes(0, 1, 1, 2), leafBytes(1), leafBytes(1)), 1, "more than the 3 nodes"},
		"feature >= dims":   {treeBytes(2, 3, splitBytes(1, 1, 1, 2), leafBytes(1), leafBytes(1)), 1, "feature 1 of a 1-feature forest"},
		"NaN threshold":     {treeBytes(2, 3, splitBytes(0, float32(math.NaN()), 1, 2), leafBytes(1), leafBytes(1)), 1, "threshold NaN"},
		"-0 threshold":      {treeBytes(2, 3, splitBytes(0, negZero, -1, 2), leafBytes(1), leafBytes(1)), 1, "threshold -0"},
		"threshold == hi":   {treeBytes(2, 3, splitBytes(0, 2, 1, 2), leafBytes(1), leafBytes(1)), 1, "outside its node's range"},
		"threshold < lo":    {treeBytes(2, 3, splitBytes(0, 0, 1, 2), leafBytes(1), leafBytes(1)), 1, "outside its node's range"},
		"too deep":          {treeBytes(5, 9, splitBytes(0, 1, 1, 2), splitBytes(0, 1, 1, 2), splitBytes(0, 1, 1, 2), splitBytes(0, 1, 1, 2), make([]byte, 64)), 1, "split at depth 3, beyond the height limit 3"},
		"counts != psi":     {treeBytes(3, 3, splitBytes(0, 1, 1, 2), leafBytes(1), leafBytes(1)), 1, "sum to 2, not the sample size 3"},
		"huge leaf":         {treeBytes(2, 1, leafBytes(0xFFFE)), 1, "leaf with 65534 samples"},
		"bad dims":          {ok, 0, "dims 0"},
		"node count vs len": {treeBytes(20000, 39999, leafBytes(1)), 1, "cannot fit"},
		"boxes vs len":      {append(treeBytes(2, 3)[:2], append([]byte{1}, slices.Concat(splitBytes(0, 1, 1, 2), leafBytes(1), leafBytes(1))...)...), 2, "with boxes cannot fit"},
		"bad varint":        {[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80}, 1, "bad sample size"},
		"unknown flags":     {append(treeBytes(1, 1)[:2], append([]byte{4}, leafBytes(1)...)...), 1, "unknown flags"},
		"boxes on 1 dim":    {append(treeBytes(1, 1)[:2], append([]byte{1}, leafBytes(1)...)...), 1, "boxes on a one-feature tree"},
		"box != range":      {append(treeBytes(2, 3)[:2], append([]byte{1}, slices.Concat(splitBytes(0, 1, 1, 2), f32s(1, 3, 0, 0), leafBytes(1), f32s(0, 0, 0, 0), leafBytes(1), f32s(0, 0, 0, 0))...)...), 2, "outside the node's range"},
		"box truncated":     {append(treeBytes(2, 3)[:2], append([]byte{1}, slices.Concat(splitBytes(0, 1, 1, 2), f32s(1, 2, 0, 0), leafBytes(1), f32s(0, 0, 0, 0), leafBytes(1), f32s(0, 0, 0))...)...), 2, "truncated"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := DecodeTree(c.b, c.dims)
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrCorruptTree))
			assert.Contains(t, err.Error(), c.want)
		})
	}
}

// FuzzDecodeTree: whatever the bytes, DecodeTree does not panic, and a tree
// it accepts scores (through the unsafe kernels) without panicking and
// encodes back to bytes that decode to the same tree.
func FuzzDecodeTree(f *testing.F) {
	rng := rand.New(rand.NewPCG(9, 9))
	for _, dims := range []int{1, 2, 3} {
		b := NewBuilder(dims)
		b.KeepBoxes(true)
		tr := b.Build(gaussData(40, dims, uint64(dims)), rng)
		enc := encodeTree(f, tr)
		f.Add(enc, uint8(dims))
		mangled := append([]byte(nil), enc...)
		mangled[len(mangled)/2] ^= 0x41
		f.Add(mangled, uint8(dims))
		f.Add(enc[:len(enc)-3], uint8(dims))
	}
	f.Add(treeBytes(2, 3, splitBytes(0, 1, 1, 2), leafBytes(1), leafBytes(1)), uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, dims uint8) {
		d := int(dims%4) + 1
		tr, n, err := DecodeTree(b, d)
		if err != nil {
			require.ErrorIs(t, err, ErrCorruptTree)
			return
		}
		require.LessOrEqual(t, n, len(b))
		fo := New(d, []*Tree{tr, tr})
		x := make([]float64, d)
		for _, v := range []float64{math.Inf(-1), -1e30, -1, 0, 0.5, 1, 2, 1e30, math.Inf(1), math.NaN()} {
			for j := range x {
				x[j] = v
			}
			s := fo.Score(x)
			require.True(t, s > 0 && s <= 1, "score %v", s)
			fo.ScoreAsInserted(x)
			fo.Attribution(x, make([]float64, d))
			require.Equal(t, tr.PathLength(x), pathLen(tr.words, tr.stride(), x))
		}
		again, _, err := DecodeTree(encodeTree(t, tr), d)
		require.NoError(t, err)
		require.Equal(t, tr, again)
	})
}

// Data holding both -0 and +0 can give a node's range and its box ends of
// different zero signs; they are the same number, and the tree must decode.
func TestDecodeSignedZeroBoxes(t *testing.T) {
	zeros := []float32{float32(math.Copysign(0, -1)), 0, -2, 1}
	for seed := uint64(0); seed < 50; seed++ {
		rng := rand.New(rand.NewPCG(seed, 1))
		data := make([]float32, 64*2)
		for i := range data {
			data[i] = zeros[rng.IntN(len(zeros))]
		}
		b := NewBuilder(2)
		b.KeepBoxes(true)
		tr := b.Build(data, rng)
		enc, err := tr.AppendBinary(nil)
		require.NoError(t, err)
		dec, _, err := DecodeTree(enc, 2)
		require.NoError(t, err, "seed %d", seed)
		for _, x := range [][]float64{{0, 0}, {math.Copysign(0, -1), 1}, {-2, 5}} {
			assert.Equal(t, tr.PathLengthAsInserted(x), dec.PathLengthAsInserted(x))
		}
	}
}
