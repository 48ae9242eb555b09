package iforestprocessor

import "go.opentelemetry.io/collector/pdata/pcommon"

// Looking ahead.
//
// With a thousand series and more, the models (about 20 KiB each) do not
// all fit in the CPU's caches, and a datapoint's score spent most of its
// time waiting for its model's memory. Working through a slice of
// datapoints, the processor therefore hashes each datapoint's series key
// aheadBy datapoints early and asks the detector to start loading that
// model (Detector.Prefetch), which then arrives while the datapoints before
// it are scored.

// aheadBy is how far ahead models are requested: one datapoint's work
// (about 2 µs) is about the time a model takes to arrive. Two measured
// best at 1000 series (3, 4 and 6 were 4-12% slower).
const aheadBy = 2

// lookahead holds the series keys of the datapoints up to aheadBy past the
// current one, by index modulo its length.
type lookahead struct {
	keys     [aheadBy + 1]uint64
	own      [aheadBy + 1]bool // the datapoint carries verdict attributes
	next     int               // the next index to hash
	prefetch bool              // whether to ask for models (high-cardinality ones are small and shared)
}

func (p *iforestProcessor) lookahead() lookahead {
	return lookahead{prefetch: p.shared == nil && p.det.Prefetching()}
}

// attributed is a datapoint: what its series key is made of.
type attributed interface{ Attributes() pcommon.Map }

// points is what pdata's datapoint slices share.
type points[P attributed] interface {
	Len() int
	At(int) P
}

// keyAhead returns the series key of datapoint i of dps (and whether it
// carries verdict attributes, see seriesKey) and requests the models of the
// datapoints up to aheadBy after it. Calls for one slice come in increasing
// i; indices may be skipped.
func keyAhead[P attributed, S points[P]](p *iforestProcessor, l *lookahead, dps S, mh uint64, i int) (uint64, bool) {
	l.next = max(l.next, i)
	for last := min(i+aheadBy, dps.Len()-1); l.next <= last; l.next++ {
		key, own := p.seriesKey(mh, dps.At(l.next).Attributes())
		l.keys[l.next%len(l.keys)], l.own[l.next%len(l.own)] = key, own
		if l.next > i && l.prefetch {
			p.det.Prefetch(key)
		}
	}
	return l.keys[i%len(l.keys)], l.own[i%len(l.own)]
}
