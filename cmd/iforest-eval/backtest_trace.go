package main

import (
	"math"
	"strings"
)

// btTraceBuckets is how many buckets a series' plot is drawn from; up to
// twice as many are kept while the data streams in.
const btTraceBuckets = 160

// btBucket summarises consecutive points of a series.
type btBucket struct {
	t      int64   // the first point's time
	lo, hi float32 // the range of its finite values (lo > hi: none)
	score  float32 // the highest score, -1: none scored
	n      uint32
}

// btTrace is a bounded, downsampled trace of a series for its plot: runs
// of per points each, and when 2*btTraceBuckets are full, adjacent pairs
// merge and per doubles.
type btTrace struct {
	per uint32
	b   []btBucket
}

func (tr *btTrace) add(t int64, v, score float64) {
	if tr.per == 0 {
		tr.per = 1
	}
	if n := len(tr.b); n == 2*btTraceBuckets && tr.b[n-1].n >= tr.per {
		tr.b = mergePairs(tr.b)
		tr.per *= 2
	}
	if n := len(tr.b); n == 0 || tr.b[n-1].n >= tr.per {
		tr.b = append(tr.b, btBucket{t: t, lo: float32(math.Inf(1)), hi: float32(math.Inf(-1)), score: -1})
	}
	b := &tr.b[len(tr.b)-1]
	b.n++
	if !math.IsNaN(v) && !math.IsInf(v, 0) {
		b.lo, b.hi = min(b.lo, float32(v)), max(b.hi, float32(v))
	}
	b.score = max(b.score, float32(score))
}

// mergePairs merges buckets 2i and 2i+1 into i, in place.
func mergePairs(b []btBucket) []btBucket {
	n := 0
	for i := 0; i < len(b); i += 2 {
		m := b[i]
		if i+1 < len(b) {
			o := b[i+1]
			m.lo, m.hi, m.score, m.n = min(m.lo, o.lo), max(m.hi, o.hi), max(m.score, o.score), m.n+o.n
		}
		b[n] = m
		n++
	}
	return b[:n]
}

// buckets returns at most btTraceBuckets buckets for drawing.
func (tr *btTrace) buckets() []btBucket {
	b := append([]btBucket(nil), tr.b...)
	for len(b) > btTraceBuckets {
		b = mergePairs(b)
	}
	return b
}

const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// encodeTrace packs buckets into 7 characters each (the report's script
// reads them back): time, low and high as 12-bit fractions of [t0, t1] and
// [lo, hi] (2 characters each), the score in 6 bits (63: none). A bucket
// without values has low 4095 and high 0.
func encodeTrace(bs []btBucket, t0, t1 int64, lo, hi float64) string {
	var sb strings.Builder
	sb.Grow(7 * len(bs))
	q12 := func(x float64) {
		q := int(math.Round(min(max(x, 0), 1) * 4095))
		sb.WriteByte(b64[q>>6])
		sb.WriteByte(b64[q&63])
	}
	span, height := float64(max(t1-t0, 1)), hi-lo
	for _, b := range bs {
		q12(float64(b.t-t0) / span)
		if b.lo > b.hi {
			q12(1)
			q12(0)
		} else {
			q12((float64(b.lo) - lo) / height)
			q12((float64(b.hi) - lo) / height)
		}
		if b.score < 0 {
			sb.WriteByte(b64[63])
		} else {
			sb.WriteByte(b64[int(math.Round(float64(min(b.score, 1))*62))])
		}
	}
	return sb.String()
}
