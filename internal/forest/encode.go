package forest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// Binary form of a tree, for snapshots of a model's state.
//
//	uvarint psi            sample size the tree was built on (1..MaxSampleSize)
//	uvarint n              number of nodes (1..2*psi-1)
//	byte    flags          bit 0: the tree has boxes (Builder.KeepBoxes)
//	n nodes in pre-order (a node, then its left subtree, then its right):
//	  leaf:     uint16 0xFFFF, uint16 training samples that reached it,
//	            float32 lo, float32 hi (the data range of a root leaf; other
//	            leaves' ranges are not kept, written as -Inf, +Inf and
//	            ignored when read)
//	  internal: uint16 feature, float32 threshold, float32 lo, float32 hi
//	  then, with boxes, the node's box: dims (lo, hi) float32 pairs
//
// All fixed-width fields are little-endian. Child indices and leaf depths are
// not stored: the decoder lays the nodes out exactly as Build does (children
// appended as an adjacent pair when their parent is split, left subtree
// first), so a tree from Build decodes to the identical Tree, and a child
// index out of range cannot even be expressed.

// AppendBinary appends the binary form of t to b (encoding.BinaryAppender).
func (t *Tree) AppendBinary(b []byte) ([]byte, error) {
	b = binary.AppendUvarint(b, uint64(t.psi))
	b = binary.AppendUvarint(b, uint64(len(t.nodes)))
	var flags byte
	if t.boxes != nil {
		flags |= flagBoxes
	}
	b = append(b, flags)
	return t.appendPreorder(b, 0), nil
}

const flagBoxes = 1

func (t *Tree) appendPreorder(b []byte, i int) []byte {
	le := binary.LittleEndian
	n := t.nodes[i]
	b = le.AppendUint16(b, n.feat)
	if n.feat == leafFeat {
		b = le.AppendUint16(b, n.a)
	} else {
		b = le.AppendUint32(b, math.Float32bits(n.thr))
	}
	lo, hi := n.lo, n.hi
	if n.feat == leafFeat && i != 0 {
		// Below the root a leaf's range is not kept (setLeafLen).
		lo, hi = float32(math.Inf(-1)), float32(math.Inf(1))
	}
	b = le.AppendUint32(b, math.Float32bits(lo))
	b = le.AppendUint32(b, math.Float32bits(hi))
	if t.boxes != nil {
		d := int(t.dims)
		for _, v := range t.boxes[i*2*d : (i+1)*2*d] {
			b = le.AppendUint32(b, math.Float32bits(v))
		}
	}
	if n.feat == leafFeat {
		return b
	}
	b = t.appendPreorder(b, i+int(n.a))
	return t.appendPreorder(b, i+int(n.a)+1)
}

// ErrCorruptTree is wrapped by every DecodeTree error.
var ErrCorruptTree = errors.New("forest: corrupt tree")

// DecodeTree decodes one tree written by AppendBinary from the start of b,
// for a forest over dims features, and returns it with the number of bytes
// it used. It accepts exactly the trees Build can produce, so that nothing
// read from outside can break the scorers' assumptions (score.go walks nodes
// through unsafe pointers): every split feature is < dims, no path is
// deeper than ceil(log2 psi) and every leaf sits at its stated depth,
// thresholds are neither NaN nor -0 and lie in [lo, hi) of their node, leaf
// sample counts sum to psi, and the node count is what the pre-order walk
// implies. It never panics, whatever b holds.
func DecodeTree(b []byte, dims int) (*Tree, int, error) {
	if dims < 1 || dims > MaxFeatures {
		return nil, 0, fmt.Errorf("%w: dims %d out of range [1, %d]", ErrCorruptTree, dims, MaxFeatures)
	}
	psi, k1 := binary.Uvarint(b)
	if k1 <= 0 {
		return nil, 0, fmt.Errorf("%w: bad sample size field", ErrCorruptTree)
	}
	if psi < 1 || psi > MaxSampleSize {
		return nil, 0, fmt.Errorf("%w: sample size %d out of range [1, %d]", ErrCorruptTree, psi, MaxSampleSize)
	}
	n, k2 := binary.Uvarint(b[k1:])
	if k2 <= 0 {
		return nil, 0, fmt.Errorf("%w: bad node count field", ErrCorruptTree)
	}
	if n < 1 || n > 2*psi-1 {
		return nil, 0, fmt.Errorf("%w: %d nodes for sample size %d (want 1..%d)", ErrCorruptTree, n, psi, 2*psi-1)
	}
	if len(b) <= k1+k2 {
		return nil, 0, errTreeTruncated
	}
	flags := b[k1+k2]
	if flags&^flagBoxes != 0 {
		return nil, 0, fmt.Errorf("%w: unknown flags %#x", ErrCorruptTree, flags)
	}
	hdr := k1 + k2 + 1
	// Every node takes at least 12 bytes: check before allocating.
	if rest := uint64(len(b) - hdr); n > rest/12 {
		return nil, 0, fmt.Errorf("%w: %d nodes cannot fit in %d bytes", ErrCorruptTree, n, rest)
	}
	d := treeDecoder{
		b:     b[hdr:],
		dims:  dims,
		limit: bits.Len(uint(psi - 1)), // Build's height limit, ceil(log2 psi)
		nodes: make([]node, 1, n),
		max:   int(n),
	}
	if flags&flagBoxes != 0 {
		if dims < 2 {
			return nil, 0, fmt.Errorf("%w: boxes on a one-feature tree", ErrCorruptTree)
		}
		// Every node is followed by its box of 8*dims bytes.
		if rest := uint64(len(b) - hdr); uint64(dims)*n > rest/8 {
			return nil, 0, fmt.Errorf("%w: %d nodes with boxes cannot fit in %d bytes", ErrCorruptTree, n, rest)
		}
		d.boxes = make([]float32, 2*dims*int(n))
	}
	if err := d.decode(0, 0); err != nil {
		return nil, 0, err
	}
	if len(d.nodes) != int(n) {
		return nil, 0, fmt.Errorf("%w: header says %d nodes, found %d", ErrCorruptTree, n, len(d.nodes))
	}
	if d.samples != psi {
		return nil, 0, fmt.Errorf("%w: leaf sample counts sum to %d, not the sample size %d", ErrCorruptTree, d.samples, psi)
	}
	t := newTree(d.nodes, int(psi))
	if d.boxes != nil {
		t.boxes, t.dims = d.boxes, int32(dims)
	}
	return t, hdr + d.off, nil
}

type treeDecoder struct {
	b       []byte
	off     int
	dims    int
	limit   int
	nodes   []node
	boxes   []float32 // nil without boxes
	max     int
	samples uint64
}

func (d *treeDecoder) u16() (uint16, bool) {
	if len(d.b)-d.off < 2 {
		return 0, false
	}
	v := binary.LittleEndian.Uint16(d.b[d.off:])
	d.off += 2
	return v, true
}

func (d *treeDecoder) f32() (float32, bool) {
	if len(d.b)-d.off < 4 {
		return 0, false
	}
	v := math.Float32frombits(binary.LittleEndian.Uint32(d.b[d.off:]))
	d.off += 4
	return v, true
}

var errTreeTruncated = fmt.Errorf("%w: truncated", ErrCorruptTree)

// box reads node ni's box, if the tree has boxes.
func (d *treeDecoder) box(ni int) ([]float32, error) {
	if d.boxes == nil {
		return nil, nil
	}
	box := d.boxes[ni*2*d.dims : (ni+1)*2*d.dims]
	for i := range box {
		v, ok := d.f32()
		if !ok {
			return nil, errTreeTruncated
		}
		if v != v { // ranges of data: never NaN
			return nil, fmt.Errorf("%w: NaN in a node's box", ErrCorruptTree)
		}
		box[i] = v
	}
	return box, nil
}

// decode fills node ni, at depth, and its subtree. Recursion is bounded by
// the height limit (at most 15).
func (d *treeDecoder) decode(ni, depth int) error {
	feat, ok := d.u16()
	if !ok {
		return errTreeTruncated
	}
	if feat == leafFeat {
		count, ok1 := d.u16()
		lo, ok2 := d.f32()
		hi, ok3 := d.f32()
		if !ok1 || !ok2 || !ok3 {
			return errTreeTruncated
		}
		if count > MaxSampleSize {
			return fmt.Errorf("%w: leaf with %d samples", ErrCorruptTree, count)
		}
		// A leaf's range comes from its data (or is unbounded): never NaN.
		if lo != lo || hi != hi {
			return fmt.Errorf("%w: leaf range [%v, %v]", ErrCorruptTree, lo, hi)
		}
		d.samples += uint64(count)
		d.nodes[ni] = node{thr: float32(depth), a: count, feat: leafFeat, lo: lo, hi: hi}
		if ni != 0 {
			d.nodes[ni].setLeafLen() // its range is not used
		}
		_, err := d.box(ni)
		return err
	}
	if depth >= d.limit {
		return fmt.Errorf("%w: split at depth %d, beyond the height limit %d", ErrCorruptTree, depth, d.limit)
	}
	if int(feat) >= d.dims {
		return fmt.Errorf("%w: split on feature %d of a %d-feature forest", ErrCorruptTree, feat, d.dims)
	}
	thr, ok1 := d.f32()
	lo, ok2 := d.f32()
	hi, ok3 := d.f32()
	if !ok1 || !ok2 || !ok3 {
		return errTreeTruncated
	}
	// Build draws lo <= thr < hi (so none is NaN) and never stores -0, which
	// the integer comparisons of the one-feature scorer rely on.
	if !(lo <= thr && thr < hi) {
		return fmt.Errorf("%w: threshold %v outside its node's range [%v, %v)", ErrCorruptTree, thr, lo, hi)
	}
	if math.Float32bits(thr) == 1<<31 {
		return fmt.Errorf("%w: threshold -0", ErrCorruptTree)
	}
	a := len(d.nodes)
	if a+2 > d.max {
		return fmt.Errorf("%w: more than the %d nodes announced", ErrCorruptTree, d.max)
	}
	d.nodes = append(d.nodes, node{}, node{})
	d.nodes[ni] = node{thr: thr, a: uint16(a - ni), feat: feat, lo: lo, hi: hi}
	box, err := d.box(ni)
	if err != nil {
		return err
	}
	// The box's range on the split feature is the node's own range.
	// Compared as numbers: -0 and +0 are the same end (which one a range
	// gets depends on the order of tied values).
	if box != nil && (box[2*feat] != lo || box[2*feat+1] != hi) {
		return fmt.Errorf("%w: box [%v, %v] on the split feature differs from the node's range [%v, %v]", ErrCorruptTree, box[2*feat], box[2*feat+1], lo, hi)
	}
	if err := d.decode(a, depth+1); err != nil {
		return err
	}
	return d.decode(a+1, depth+1)
}
