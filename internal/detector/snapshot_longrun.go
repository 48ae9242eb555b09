package detector

import (
	"encoding/binary"
	"math"
	"slices"
)

// The long-run state of a one-input model in a snapshot (format version 6),
// after its members:
//
//	uint8 present (1 for one-input models, else 0); if 1:
//	  season: keepDays (15) rows, day d in row d % 15, each int32 day
//	          number (-1: none), float32
//	          base, int8 scale exponent, uint8 base set, uint16 × daySlots
//	          half-hour offsets as half floats (0x7e00: no data) (season.go);
//	          int64 half hour being filled (-1: none), float64 its sum, uint32 its count,
//	          float64 level, float64 offset, float32 × 3 errors,
//	          uint32 × 3 error counts, uint8 prediction in use
//	  calibration: float32 × calBins, float32 over, total, next weight;
//	          float64 stretch average, mean, variance, uint32 count,
//	          float64 stretch's lowest tail
//	  held: uint32 n, n × (float32 residual, float32 surprise or -1),
//	        int64 first held time, float64 sum of their departures,
//	        uint8 accepted, uint32 flagged run
//	  float64 mean absolute residual, uint32 its count,
//	  float64 quantum, float64 previous value, float64 step (s),
//	  int64 previous time, uint8 a negative value seen, uint8 a value
//	  above 1 seen,
//	  float32 × daySlots half hours' usual residuals, uint8 × daySlots
//	  their counts (up to 64)
//
// Version 5 ended before the half hours' residuals: read, they start empty.
// Version 4 kept 8 rows, four weekdays and four weekend days, in the same
// form. Version 3 kept the season as float32 × 9*daySlots half-hour means
// (NaN: no data), then int32 × 9 day numbers, five weekday rows and four
// weekend ones. Both are read into the ring as their days would have been
// written.

func appendLongRun(b []byte, lr *longRun) []byte {
	le := binary.LittleEndian
	f32 := func(b []byte, v float32) []byte { return le.AppendUint32(b, math.Float32bits(v)) }
	f64 := func(b []byte, v float64) []byte { return le.AppendUint64(b, math.Float64bits(v)) }
	if lr == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	se := &lr.season
	for k := range se.day {
		r := &se.day[k]
		b = le.AppendUint32(b, uint32(r.no))
		b = f32(b, r.base)
		b = append(b, uint8(r.exp), b2byte(r.used))
		for _, h := range r.v {
			b = le.AppendUint16(b, h)
		}
	}
	b = le.AppendUint64(b, uint64(se.slot))
	b = f64(b, se.sum)
	b = le.AppendUint32(b, uint32(se.n))
	b = f64(b, se.level)
	b = f64(b, se.off)
	for _, e := range se.err {
		b = f32(b, e)
	}
	for _, n := range se.errN {
		b = le.AppendUint32(b, uint32(n))
	}
	b = append(b, se.used)

	c := &lr.cal
	for _, v := range c.bins {
		b = f32(b, v)
	}
	b = f32(b, c.over)
	b = f32(b, c.total)
	b = f32(b, c.inc)
	b = f64(b, c.avg)
	b = f64(b, c.mean)
	b = f64(b, c.sq)
	b = le.AppendUint32(b, uint32(c.n))
	b = f64(b, c.best)

	b = le.AppendUint32(b, uint32(len(lr.held)))
	for _, h := range lr.held {
		b = f32(b, h.r)
		b = f32(b, h.u)
	}
	b = le.AppendUint64(b, uint64(lr.heldSince))
	b = f64(b, lr.heldDev)
	b = append(b, b2byte(lr.accepted))
	b = le.AppendUint32(b, uint32(lr.run))
	b = f64(b, lr.spread)
	b = le.AppendUint32(b, uint32(lr.spreadN))
	b = f64(b, lr.quantum)
	b = f64(b, lr.prev)
	b = f64(b, lr.step)
	b = le.AppendUint64(b, uint64(lr.tlast))
	b = append(b, b2byte(lr.negative), b2byte(lr.aboveOne))
	for _, v := range lr.slotSpread {
		b = f32(b, v)
	}
	return append(b, lr.slotN[:]...)
}

// decodeLongRun reads what appendLongRun wrote for a model that should
// (want) or should not have a long-run state, and validates it.
func decodeLongRun(r *reader, want bool) (*longRun, error) {
	present := r.flag("long-run state present")
	if r.err != nil {
		return nil, r.err
	}
	if present != want {
		return nil, corrupt("long-run state present: %v, want %v", present, want)
	}
	if !present {
		return nil, nil
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	lr := newLongRun()
	se := &lr.season
	var err error
	switch r.version {
	case snapshotV3:
		err = decodeDaysV3(r, se)
	case snapshotV4:
		err = decodeDaysV4(r, se)
	default:
		err = decodeDays(r, se)
	}
	if err != nil {
		return nil, err
	}
	se.slot = int64(r.u64())
	se.sum = r.f64()
	n := r.u32()
	se.level, se.off = r.f64(), r.f64()
	for i := range se.err {
		se.err[i] = r.f32()
	}
	for i := range se.errN {
		se.errN[i] = int32(r.u32())
	}
	se.used = r.u8()
	if r.err != nil {
		return nil, r.err
	}
	ok := se.slot >= -1 && se.slot <= maxSlot && n <= math.MaxInt32 && finite(se.sum) && finite(se.level) && finite(se.off) && se.used < numPred
	for i := range numPred {
		ok = ok && finite(float64(se.err[i])) && se.err[i] >= 0 && se.errN[i] >= 0
	}
	if !ok {
		return nil, corrupt("time context out of range")
	}
	se.n = int32(n)

	c := &lr.cal
	for i := range c.bins {
		c.bins[i] = r.f32()
	}
	c.over, c.total, c.inc = r.f32(), r.f32(), r.f32()
	c.avg, c.mean, c.sq = r.f64(), r.f64(), r.f64()
	cn := r.u32()
	c.best = r.f64()
	if r.err != nil {
		return nil, r.err
	}
	ok = c.inc >= 1 && c.inc <= 1e30*calGrow && c.over >= 0 && c.over < math.MaxFloat32 &&
		c.total >= 0 && c.total < math.MaxFloat32 && finite(c.avg) && finite(c.mean) &&
		finite(c.sq) && c.sq >= 0 && cn <= math.MaxInt32 && c.best > 0 && c.best <= 1
	for _, v := range c.bins {
		ok = ok && v >= 0 && v < math.MaxFloat32
	}
	if !ok {
		return nil, corrupt("calibration out of range")
	}
	c.n = int32(cn)

	nh := r.u32()
	if r.err != nil {
		return nil, r.err
	}
	if nh > maxHeld || uint64(nh)*8 > uint64(len(r.b)) {
		return nil, corrupt("%d held points", nh)
	}
	if nh > 0 {
		lr.held = make([]heldPoint, nh)
		for i := range lr.held {
			h := heldPoint{r.f32(), r.f32()}
			if !finite(float64(h.r)) || !(h.u == -1 || h.u >= 0) || math.IsInf(float64(h.u), 0) {
				return nil, corrupt("held point %v", h)
			}
			lr.held[i] = h
		}
	}
	lr.heldSince = int64(r.u64())
	lr.heldDev = r.f64()
	lr.accepted = r.flag("incident accepted")
	run := r.u32()
	lr.spread = r.f64()
	spreadN := r.u32()
	lr.quantum, lr.prev, lr.step = r.f64(), r.f64(), r.f64()
	lr.tlast = int64(r.u64())
	lr.negative = r.flag("negative seen")
	lr.aboveOne = r.flag("above one seen")
	if r.err != nil {
		return nil, r.err
	}
	if run > math.MaxInt32 || !finite(lr.heldDev) || spreadN > math.MaxInt32 || !finite(lr.spread) || lr.spread < 0 || !finite(lr.quantum) || lr.quantum < 0 || !finite(lr.prev) || !finite(lr.step) || lr.step < 0 {
		return nil, corrupt("long-run state out of range")
	}
	lr.run, lr.spreadN = int32(run), int32(spreadN)
	if r.version > snapshotV5 {
		for i := range lr.slotSpread {
			lr.slotSpread[i] = r.f32()
		}
		for i := range lr.slotN {
			lr.slotN[i] = r.u8()
		}
		if r.err != nil {
			return nil, r.err
		}
		for i, v := range lr.slotSpread {
			if !(v >= 0 && v <= math.MaxFloat32) || lr.slotN[i] > slotMinPoints {
				return nil, corrupt("half hour %d's usual residual %v (%d points)", i, v, lr.slotN[i])
			}
		}
	}
	return lr, nil
}

// decodeDays reads the season's rows (versions 5 and 6).
func decodeDays(r *reader, se *season) error {
	for k := range se.day {
		d := &se.day[k]
		if err := decodeDay(r, d, k); err != nil {
			return err
		}
		if d.no >= 0 && int(d.no)%keepDays != k {
			return corrupt("day %d in row %d", d.no, k)
		}
	}
	return nil
}

// decodeDay reads one row as versions 4 and 5 write it.
func decodeDay(r *reader, d *dayRow, k int) error {
	d.no = int32(r.u32())
	d.base = r.f32()
	d.exp = int8(r.u8())
	d.used = r.flag("day row used")
	for i := range d.v {
		d.v[i] = r.u16()
	}
	if r.err != nil {
		return r.err
	}
	if d.no < -1 {
		return corrupt("day %d in row %d", d.no, k)
	}
	if math.IsNaN(float64(d.base)) || math.IsInf(float64(d.base), 0) || d.exp < minExp || d.exp > maxExp {
		return corrupt("day row %d: base %v, scale 2^%d", k, d.base, d.exp)
	}
	for _, h := range d.v {
		if h != noHalf && (h&0x7c00 == 0x7c00 || !d.used) {
			return corrupt("day row %d: half hour %#04x", k, h)
		}
	}
	return nil
}

// decodeDaysV4 reads version 4's eight rows, four weekdays then four
// weekend days, into the ring.
func decodeDaysV4(r *reader, se *season) error {
	const rows, weekdays = 8, 4
	var old [rows]dayRow
	for k := range old {
		d := &old[k]
		if err := decodeDay(r, d, k); err != nil {
			return err
		}
		if d.no >= 0 && weekend(int64(d.no)) != (k >= weekdays) {
			return corrupt("day %d in row %d", d.no, k)
		}
		for j := range k {
			if d.no >= 0 && old[j].no == d.no {
				return corrupt("day %d in rows %d and %d", d.no, j, k)
			}
		}
	}
	for k := range old {
		se.keep(&old[k])
	}
	return nil
}

// keep puts an older format's row into the ring, unless its place holds a
// newer day.
func (se *season) keep(d *dayRow) {
	if d.no < 0 {
		return
	}
	if to := &se.day[int(d.no)%keepDays]; to.no < d.no {
		*to = *d
	}
}

// decodeDaysV3 reads version 3's float32 means into the ring: each day's
// means are stored as they would have been, in the order of their half
// hours (of two days fifteen apart, the newer).
func decodeDaysV3(r *reader, se *season) error {
	const rows, weekdays = 9, 5
	var means [rows][daySlots]float32
	var days [rows]int32
	for k := range means {
		for i := range means[k] {
			v := r.f32()
			if math.IsInf(float64(v), 0) {
				return corrupt("half-hour mean %v", v)
			}
			means[k][i] = v
		}
	}
	for k := range days {
		d := int32(r.u32())
		if d < -1 || (d >= 0 && weekend(int64(d)) != (k >= weekdays)) {
			return corrupt("day %d in row %d", d, k)
		}
		if d >= 0 && slices.Contains(days[:k], d) {
			return corrupt("day %d in two rows", d)
		}
		days[k] = d
	}
	if r.err != nil {
		return r.err
	}
	for k := range rows {
		var d dayRow
		d.clear(days[k])
		for i, v := range means[k] {
			if days[k] >= 0 && !math.IsNaN(float64(v)) {
				d.set(int64(i), v)
			}
		}
		se.keep(&d)
	}
	return nil
}

// maxSlot is the last half hour a timestamp (int64 unix nanoseconds) can
// fall in: a restored half hour beyond it would store its mean under a day
// number that does not fit the rows.
const maxSlot = math.MaxInt64 / 1_000_000_000 / slotSecs
