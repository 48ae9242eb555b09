package detector

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// halfRef rounds f to a half the slow way: to the nearest multiple of the
// half's spacing at f's magnitude, ties to even, saturating at 65504.
func halfRef(f float32) float32 {
	x := math.Abs(float64(f))
	if x == 0 {
		return f
	}
	ulp := math.Ldexp(1, -24) // subnormal spacing
	if x >= math.Ldexp(1, -14) {
		ulp = math.Ldexp(1, math.Ilogb(x)-10)
	}
	r := math.RoundToEven(x/ulp) * ulp
	r = math.Min(r, 65504)
	if x >= 65520 { // rounds to 65536 and beyond: infinity, saturated
		r = 65504
	}
	return float32(math.Copysign(r, float64(f)))
}

func TestHalfRoundTripsEveryCode(t *testing.T) {
	for c := range 1 << 16 {
		h := uint16(c)
		if h&0x7c00 == 0x7c00 { // infinities and NaNs are never stored
			continue
		}
		f := fromHalf(h)
		require.Equal(t, h, toHalf(f), "code %#04x (%v)", h, f)
		if h&0x7fff != 0 {
			assert.Equal(t, float32(halfRef(f)), f, "code %#04x", h)
		}
	}
}

func TestHalfRounding(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	check := func(f float32) {
		t.Helper()
		require.Equal(t, halfRef(f), fromHalf(toHalf(f)), "%v (bits %#08x)", f, math.Float32bits(f))
	}
	// Ties and their neighbours at every binade, subnormals included.
	for e := -26; e <= 16; e++ {
		for _, m := range []float64{1, 1 + 1.0/2048, 1 + 1.0/1024 + 1.0/2048, 1.5, 2 - 1.0/2048, 2 - 1.0/4096} {
			v := float32(math.Ldexp(m, e))
			for _, f := range []float32{v, math.Nextafter32(v, 0), math.Nextafter32(v, 1e9)} {
				check(f)
				check(-f)
			}
		}
	}
	for _, f := range []float32{0, 65504, 65519.99, 65520, 1e9, math.MaxFloat32, 5.96e-8, 2.98e-8, 2.99e-8, 1e-30} {
		check(f)
	}
	for range 200000 {
		check(math.Float32frombits(rng.Uint32()&^(0xff<<23) | uint32(rng.IntN(60)+100)<<23))
	}
	assert.Equal(t, uint16(halfMax), toHalf(float32(math.Inf(1))), "saturates")
}

// A day's half hours keep the level in full and the cycle to a half's
// precision: a series at 1e6 moving by 10 over the day.
func TestDayRowKeepsLevelAndCycle(t *testing.T) {
	var r dayRow
	r.clear(20000)
	want := make([]float64, daySlots)
	for i := range daySlots {
		want[i] = float64(toFloat32(1e6 + 10*math.Sin(float64(i)/8)))
		if i == 5 {
			continue // no data
		}
		r.set(int64(i), toFloat32(want[i]))
	}
	for i := range daySlots {
		got, ok := r.get(int64(i))
		if i == 5 {
			assert.False(t, ok)
			continue
		}
		require.True(t, ok)
		assert.InDelta(t, want[i], got, 10.0/2048, "half hour %d", i)
	}
	got, _ := r.get(0)
	assert.Equal(t, want[0], got, "the first is the base, exact")
}

func TestExpFor(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for range 100000 {
		m := abs32(math.Float32frombits(rng.Uint32()))
		if math.IsInf(float64(m), 0) || math.IsNaN(float64(m)) || m == 0 {
			continue
		}
		want := int16(min(max(math.Ilogb(float64(m))-scaleTop, minExp), maxExp))
		require.Equal(t, want, expFor(m), "%v", m)
	}
	assert.Equal(t, int16(0), expFor(0))
	assert.Equal(t, int16(-scaleTop), expFor(1))
	assert.Equal(t, int16(minExp), expFor(math.SmallestNonzeroFloat32))
	assert.Equal(t, int16(maxExp), expFor(math.MaxFloat32))
}
