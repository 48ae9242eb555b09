package forest

import (
	"fmt"
	"math"
	"slices"
)

// ImportTree converts a scikit-learn style tree (parallel node arrays as in
// sklearn.tree._tree.Tree: feature, threshold, children_left, children_right,
// n_node_samples; node 0 is the root; a node is a leaf iff left == -1; go
// left iff x[feature] <= threshold) into a Tree normalised by sampleSize
// (the forest's max_samples_).
//
// Routing is preserved exactly for float32 inputs, which is what
// scikit-learn scores (it casts X to float32 and compares with the float64
// threshold): the threshold is stored rounded down to float32, and for any
// float32 x, x <= t iff x <= floor32(t). Nodes are laid out in pre-order and
// leaf depths are computed on the way (a tree deeper than 15 is refused).
// The leaves' n_node_samples must sum to sampleSize, as they do for
// scikit-learn (the root holds max_samples_ rows).
func ImportTree(feature []int, threshold []float64, left, right, nSamples []int, sampleSize int) (*Tree, error) {
	n := len(feature)
	if n == 0 {
		return nil, fmt.Errorf("forest: empty tree")
	}
	if len(threshold) != n || len(left) != n || len(right) != n || len(nSamples) != n {
		return nil, fmt.Errorf("forest: node arrays have different lengths (%d, %d, %d, %d, %d)",
			n, len(threshold), len(left), len(right), len(nSamples))
	}
	if n > 2*MaxSampleSize-1 {
		return nil, fmt.Errorf("forest: %d nodes exceed the %d supported", n, 2*MaxSampleSize-1)
	}
	if sampleSize < 1 || sampleSize > MaxSampleSize {
		return nil, fmt.Errorf("forest: sample size %d out of range [1, %d]", sampleSize, MaxSampleSize)
	}

	im := importer{feature: feature, threshold: threshold, left: left, right: right, nSamples: nSamples, seen: make([]bool, n)}
	if err := im.node(0, 0); err != nil {
		return nil, err
	}
	// Attribution relies on the root holding exactly sampleSize samples.
	if im.total != sampleSize {
		return nil, fmt.Errorf("forest: leaf sample counts sum to %d, not the sample size %d", im.total, sampleSize)
	}
	// Unreachable input nodes are dropped; the result is exactly sized.
	return &Tree{words: slices.Clip(im.words), invC: normaliser(sampleSize), psi: int32(sampleSize), depth: int32(im.depth)}, nil
}

type importer struct {
	feature               []int
	threshold             []float64
	left, right, nSamples []int
	seen                  []bool
	words                 []uint32
	total, depth          int
}

// node appends node o at depth and its subtree, in pre-order. Recursion is
// bounded by maxDepth.
func (im *importer) node(o, depth int) error {
	n := len(im.feature)
	root := len(im.words) == 0
	if im.left[o] == -1 {
		s := im.nSamples[o]
		if s < 0 || s > MaxSampleSize {
			return fmt.Errorf("forest: leaf %d has %d samples, outside [0, %d]", o, s, MaxSampleSize)
		}
		im.total += s
		im.depth = max(im.depth, depth)
		im.words = append(im.words, leafWord(depth, s))
		if root { // its data range is not in scikit-learn's arrays
			im.words = append(im.words, negInf, posInf)
		}
		return nil
	}
	if depth >= maxDepth {
		return fmt.Errorf("forest: node %d is deeper than %d", o, maxDepth)
	}
	l, r := im.left[o], im.right[o]
	for _, c := range [2]int{l, r} {
		if c <= 0 || c >= n {
			return fmt.Errorf("forest: node %d has child %d outside [1, %d)", o, c, n)
		}
		if im.seen[c] {
			return fmt.Errorf("forest: node %d is reached twice", c)
		}
		im.seen[c] = true
	}
	if f := im.feature[o]; f < 0 || f > MaxFeatures-1 {
		return fmt.Errorf("forest: node %d splits on feature %d, outside [0, %d)", o, f, MaxFeatures)
	}
	t := im.threshold[o]
	if math.IsNaN(t) {
		return fmt.Errorf("forest: node %d has a NaN threshold", o)
	}
	// The training data's ranges are not in scikit-learn's arrays; an
	// unbounded range makes ScoreAsInserted equal Score for these trees.
	at := len(im.words)
	im.words = append(im.words, 0, math.Float32bits(floorFloat32(t)), unboundedWord)
	if err := im.node(l, depth+1); err != nil {
		return err
	}
	im.words[at] = splitWord(im.feature[o], len(im.words)-at-splitSize)
	return im.node(r, depth+1)
}
