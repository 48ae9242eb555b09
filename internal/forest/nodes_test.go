package forest

import "math"

// tnode is a node of a tree as the tests look at it.
type tnode struct {
	o, depth    int // offset of its first word, depth
	leaf        bool
	feat        int
	thr         float32
	lo, hi      float32 // a split's range as kept, a root leaf's data range
	samples     int     // a leaf's training samples
	left, right int     // a split's children's offsets
}

// nodesOf returns the nodes of tr in pre-order.
func nodesOf(tr *Tree) []tnode {
	var out []tnode
	tr.each(func(o, depth int) {
		n := nodeAt(tr, o)
		n.depth = depth
		out = append(out, n)
	})
	return out
}

// nodeAt returns the node at offset o of tr (without its depth).
func nodeAt(tr *Tree, o int) tnode {
	w0 := tr.words[o]
	n := tnode{o: o}
	if isLeaf(w0) {
		n.leaf, n.samples = true, leafSamples(w0)
		if o == 0 {
			n.lo, n.hi = rootRange(tr.words)
		}
		return n
	}
	n.feat = splitFeat(w0)
	n.thr = math.Float32frombits(tr.words[o+1])
	n.lo, n.hi = storedRange(tr.words[o+2], n.thr)
	n.left, n.right = o+tr.stride(), o+tr.stride()+leftWords(w0)
	return n
}

// route returns the offset of the leaf x ends in.
func route(tr *Tree, x []float64) int {
	o := 0
	for {
		n := nodeAt(tr, o)
		if n.leaf {
			return o
		}
		if x[n.feat] <= float64(n.thr) {
			o = n.left
		} else {
			o = n.right
		}
	}
}
