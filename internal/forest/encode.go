package forest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
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
//	            (the range the tree keeps, which holds the split's data)
//	  then, with boxes, the node's box: dims (lo, hi) float32 pairs (a
//	  leaf below the root has none kept: written as -Inf, +Inf, ignored)
//
// All fixed-width fields are little-endian. Links and leaf depths are not
// stored: the decoder lays the nodes out exactly as Build does (pre-order),
// so a tree from Build decodes to the identical Tree, and a link out of
// range cannot even be expressed. A split's range is kept rounded
// outwards to 8 bits of precision (see encodeRange) and written as kept;
// reading it back keeps it as it was, and an exact range (a snapshot
// written before ranges were rounded) is rounded as a new tree's is.

// AppendBinary appends the binary form of t to b (encoding.BinaryAppender).
func (t *Tree) AppendBinary(b []byte) ([]byte, error) {
	b = binary.AppendUvarint(b, uint64(t.psi))
	b = binary.AppendUvarint(b, uint64(t.NumNodes()))
	var flags byte
	if t.boxDims != 0 {
		flags |= flagBoxes
	}
	b = append(b, flags)
	t.each(func(o, _ int) { b = t.appendNode(b, o) })
	return b, nil
}

const flagBoxes = 1

var (
	negInf = math.Float32bits(float32(math.Inf(-1)))
	posInf = math.Float32bits(float32(math.Inf(1)))
)

func (t *Tree) appendNode(b []byte, o int) []byte {
	le := binary.LittleEndian
	w := t.words
	w0 := w[o]
	hasBox := t.boxDims != 0
	if isLeaf(w0) {
		b = le.AppendUint16(b, 0xFFFF)
		b = le.AppendUint16(b, uint16(leafSamples(w0)))
		if o != 0 { // below the root a leaf keeps no range (nor box)
			b = le.AppendUint32(le.AppendUint32(b, negInf), posInf)
			for range t.boxDims {
				b = le.AppendUint32(le.AppendUint32(b, negInf), posInf)
			}
			return b
		}
		b = le.AppendUint32(le.AppendUint32(b, w[1]), w[2])
	} else {
		thr := math.Float32frombits(w[o+1])
		lo, hi := storedRange(w[o+2], thr)
		b = le.AppendUint16(b, uint16(splitFeat(w0)))
		b = le.AppendUint32(b, w[o+1])
		b = le.AppendUint32(le.AppendUint32(b, math.Float32bits(lo)), math.Float32bits(hi))
	}
	if hasBox {
		for _, v := range w[o+splitSize : o+t.stride()] {
			b = le.AppendUint32(b, v)
		}
	}
	return b
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
		max:   int(n),
	}
	stride := splitSize
	if flags&flagBoxes != 0 {
		if dims < 2 {
			return nil, 0, fmt.Errorf("%w: boxes on a one-feature tree", ErrCorruptTree)
		}
		// Every node is followed by its box of 8*dims bytes.
		if rest := uint64(len(b) - hdr); uint64(dims)*n > rest/8 {
			return nil, 0, fmt.Errorf("%w: %d nodes with boxes cannot fit in %d bytes", ErrCorruptTree, n, rest)
		}
		stride += 2 * dims
		if (n/2)*uint64(stride)+n/2+1 > maxSubtree {
			return nil, 0, fmt.Errorf("%w: %d nodes with boxes of %d features are too large to link", ErrCorruptTree, n, dims)
		}
		d.boxes = true
	}
	d.stride = stride
	// At most n/2 splits (of stride words) and n/2+1 leaves.
	d.words = make([]uint32, 0, (n/2)*uint64(stride)+n/2+uint64(stride))
	if err := d.decode(0); err != nil {
		return nil, 0, err
	}
	if d.nodes != int(n) {
		return nil, 0, fmt.Errorf("%w: header says %d nodes, found %d", ErrCorruptTree, n, d.nodes)
	}
	if d.samples != psi {
		return nil, 0, fmt.Errorf("%w: leaf sample counts sum to %d, not the sample size %d", ErrCorruptTree, d.samples, psi)
	}
	t := &Tree{words: slices.Clip(d.words), invC: normaliser(int(psi)), psi: int32(psi), depth: int32(d.depth)}
	if d.boxes {
		t.boxDims = int32(dims)
	}
	return t, hdr + d.off, nil
}

type treeDecoder struct {
	b       []byte
	off     int
	dims    int
	limit   int
	stride  int
	boxes   bool
	words   []uint32
	max     int
	nodes   int
	depth   int
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

// box reads a node's box, if the tree has boxes, and appends it to the
// words if keep.
func (d *treeDecoder) box(keep bool) ([]uint32, error) {
	if !d.boxes {
		return nil, nil
	}
	at := len(d.words)
	for range 2 * d.dims {
		v, ok := d.f32()
		if !ok {
			return nil, errTreeTruncated
		}
		if v != v { // ranges of data: never NaN
			return nil, fmt.Errorf("%w: NaN in a node's box", ErrCorruptTree)
		}
		if keep {
			d.words = append(d.words, math.Float32bits(v))
		}
	}
	if !keep {
		return nil, nil
	}
	return d.words[at:], nil
}

// decode appends the node at depth, and its subtree. Recursion is bounded
// by the height limit (at most 15).
func (d *treeDecoder) decode(depth int) error {
	if d.nodes++; d.nodes > d.max {
		return fmt.Errorf("%w: more than the %d nodes announced", ErrCorruptTree, d.max)
	}
	root := len(d.words) == 0
	feat, ok := d.u16()
	if !ok {
		return errTreeTruncated
	}
	if feat == 0xFFFF {
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
		d.depth = max(d.depth, depth)
		d.words = append(d.words, leafWord(depth, int(count)))
		if root {
			d.words = append(d.words, math.Float32bits(lo), math.Float32bits(hi))
		}
		_, err := d.box(root)
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
	at := len(d.words)
	d.words = append(d.words, 0, math.Float32bits(thr), encodeRange(thr, lo, hi))
	box, err := d.box(true)
	if err != nil {
		return err
	}
	// The node's range holds its data, the box's range on its feature.
	if box != nil {
		blo, bhi := math.Float32frombits(box[2*feat]), math.Float32frombits(box[2*feat+1])
		if !(lo <= blo && bhi <= hi) {
			return fmt.Errorf("%w: box [%v, %v] on the split feature outside the node's range [%v, %v]", ErrCorruptTree, blo, bhi, lo, hi)
		}
	}
	if err := d.decode(depth + 1); err != nil {
		return err
	}
	d.words[at] = splitWord(int(feat), len(d.words)-at-d.stride)
	return d.decode(depth + 1)
}
