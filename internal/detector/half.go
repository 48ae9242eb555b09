package detector

import "math"

// Half floats (IEEE binary16): sign, 5 exponent bits (bias 15), 10
// fraction bits; normal from 2^-14, subnormal down to 2^-24, largest finite
// 65504. A day's half-hour means are kept as halves scaled by a power of
// two (see dayRow in season.go): 11 significant bits, a relative error of
// at most 1/2048.
const (
	halfMax     = 0x7bff     // 65504
	f32HalfOver = 0x477ff000 // |float32| bits from which a half rounds past 65504
	f32HalfNorm = 0x38800000 // 2^-14, the smallest normal half
	f32HalfZero = 0x33000000 // 2^-25: at or below, a half rounds to 0
)

// toHalf rounds f to the nearest half (ties to even), saturating at
// ±65504: no infinity is ever stored.
func toHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	a := b &^ 0x80000000
	switch {
	case a >= f32HalfOver:
		return sign | halfMax
	case a >= f32HalfNorm:
		a -= 112 << 23 // float32's exponent bias to the half's
		a += 0xfff + (a>>13)&1
		return sign | uint16(a>>13)
	case a <= f32HalfZero:
		return sign
	}
	// Subnormal: the code is f * 2^24, rounded.
	shift := 126 - a>>23 // 14 to 24
	m := a&0x7fffff | 0x800000
	r, rem, half := m>>shift, m&(1<<shift-1), uint32(1)<<(shift-1)
	if rem > half || rem == half && r&1 == 1 {
		r++
	}
	return sign | uint16(r)
}

func fromHalf(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	a := uint32(h & 0x7fff)
	if a >= 0x400 {
		return math.Float32frombits(sign | (a<<13 + 112<<23))
	}
	return math.Float32frombits(sign | math.Float32bits(float32(a)*0x1p-24))
}

// pow2 returns 2^e as a float32, for e in [-126, 127].
func pow2(e int) float32 { return math.Float32frombits(uint32(e+127) << 23) }

// Scale exponents: the largest magnitude m of a set of halves is stored in
// [2^12, 2^13), within float32's normal powers: values keep 11 bits down to
// 2^26 times smaller, and one up to eight times larger is still rounded,
// not saturated, at the present scale.
const (
	scaleTop = 12
	minExp   = -126
	maxExp   = 127 - 16
)

// expFor returns the scale exponent for halves whose largest magnitude is m.
func expFor(m float32) int16 {
	e := int(math.Float32bits(m) >> 23 & 0xff) // m's binade, biased
	switch {
	case m == 0 || m != m:
		return 0
	case e == 0: // subnormal
		e = math.Ilogb(float64(m)) + 127
	}
	return int16(min(max(e-127-scaleTop, minExp), maxExp))
}

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }
