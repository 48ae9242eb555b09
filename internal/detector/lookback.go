package detector

// Derived input of one-input series (Config.Lookback).
//
// A value inside the usual range can still be news: a level shift, or a
// jump from one end of the range to the other. One-input models therefore
// see a second input, the value's departure from the mean of the previous
// Lookback points. The window keeps raw values only; the departure is
// computed when a tree is built or a point is scored, so a longer window
// costs 4 bytes a point and not a feature vector.

// forestDims is the number of forest inputs of a model with dims raw inputs.
func (d *Detector) forestDims(kind Kind, dims int) int {
	if d.cfg.Lookback > 0 && kind != Vector && dims == 1 {
		return 2
	}
	return dims
}

// departure returns v minus the mean of up to n window values, starting at
// age a0 (0 = the newest stored row) and going back. With no history it is
// 0: nothing to depart from.
func (s *series) departure(windowSize, a0, n int, v float64) float64 {
	n = min(n, s.rows-a0)
	if n <= 0 {
		return 0
	}
	i := s.head - 1 - a0
	if i < 0 {
		i += windowSize
	}
	// The rows are at most two runs of the ring: [i-n+1, i], or [0, i]
	// and the ring's end. Summed in four parts, so that the additions do
	// not wait on each other.
	var sum float64
	if i+1 >= n {
		sum = sumF32(s.win[i+1-n : i+1])
	} else {
		sum = sumF32(s.win[:i+1]) + sumF32(s.win[windowSize-(n-i-1):windowSize])
	}
	return v - sum/float64(n)
}

// sumF32 is the sum of xs in float64.
func sumF32(xs []float32) float64 {
	var s0, s1, s2, s3 float64
	for len(xs) >= 4 {
		s0 += float64(xs[0])
		s1 += float64(xs[1])
		s2 += float64(xs[2])
		s3 += float64(xs[3])
		xs = xs[4:]
	}
	for _, x := range xs {
		s0 += float64(x)
	}
	return (s0 + s1) + (s2 + s3)
}
