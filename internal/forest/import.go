package forest

import (
	"fmt"
	"math"
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
// float32 x, x <= t iff x <= floor32(t). Nodes are relabelled breadth-first
// so siblings are adjacent, and leaf depths are computed on the way. The
// leaves' n_node_samples must sum to sampleSize, as they do for
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

	type item struct{ old, new, depth int }
	nodes := make([]node, 1, n)
	seen := make([]bool, n)
	queue := []item{{0, 0, 0}}
	seen[0] = true
	for len(queue) > 0 {
		it := queue[0]
		queue = queue[1:]
		o := it.old
		if left[o] == -1 {
			s := nSamples[o]
			if s < 0 || s > MaxSampleSize {
				return nil, fmt.Errorf("forest: leaf %d has %d samples, outside [0, %d]", o, s, MaxSampleSize)
			}
			nodes[it.new] = node{thr: float32(it.depth), a: uint16(s), feat: leafFeat, lo: float32(math.Inf(-1)), hi: float32(math.Inf(1))}
			if it.new != 0 {
				nodes[it.new].setLeafLen()
			}
			continue
		}
		l, r := left[o], right[o]
		for _, c := range [2]int{l, r} {
			if c <= 0 || c >= n {
				return nil, fmt.Errorf("forest: node %d has child %d outside [1, %d)", o, c, n)
			}
			if seen[c] {
				return nil, fmt.Errorf("forest: node %d is reached twice", c)
			}
			seen[c] = true
		}
		if f := feature[o]; f < 0 || f > MaxFeatures-1 {
			return nil, fmt.Errorf("forest: node %d splits on feature %d, outside [0, %d)", o, f, MaxFeatures)
		}
		t := threshold[o]
		if math.IsNaN(t) {
			return nil, fmt.Errorf("forest: node %d has a NaN threshold", o)
		}
		a := len(nodes)
		nodes = append(nodes, node{}, node{})
		// The training data's ranges are not in scikit-learn's arrays; an
		// unbounded range makes ScoreAsInserted equal Score for these trees.
		nodes[it.new] = node{thr: floorFloat32(t), a: uint16(a - it.new), feat: uint16(feature[o]), lo: float32(math.Inf(-1)), hi: float32(math.Inf(1))}
		queue = append(queue, item{l, a, it.depth + 1}, item{r, a + 1, it.depth + 1})
	}
	// Attribution relies on the root holding exactly sampleSize samples.
	total := 0
	for _, nd := range nodes {
		if nd.feat == leafFeat {
			total += int(nd.a)
		}
	}
	if total != sampleSize {
		return nil, fmt.Errorf("forest: leaf sample counts sum to %d, not the sample size %d", total, sampleSize)
	}
	// Unreachable input nodes are dropped; the result is exactly sized.
	out := make([]node, len(nodes))
	copy(out, nodes)
	return newTree(out, sampleSize), nil
}
