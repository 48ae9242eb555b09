package forest

import (
	"encoding/csv"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sharedData is the reference data folder, a sibling of the repository.
var sharedData = filepath.Join("..", "..", "..", "shared", "data")

// sklearnArrays exports tr in scikit-learn's layout (depth-first preorder,
// right subtree after the whole left one), the inverse of ImportTree.
func sklearnArrays(tr *Tree) (feature []int, thr []float64, left, right, samples []int) {
	var rec func(o int) (int, int)
	rec = func(o int) (int, int) {
		id := len(feature)
		n := nodeAt(tr, o)
		feature = append(feature, -2)
		thr = append(thr, -2)
		left = append(left, -1)
		right = append(right, -1)
		samples = append(samples, 0)
		if n.leaf {
			samples[id] = n.samples
			return id, n.samples
		}
		feature[id] = n.feat
		// A float64 threshold strictly between thr and the next float32, as
		// scikit-learn's would usually be.
		next := float64(math.Nextafter32(n.thr, float32(math.Inf(1))))
		thr[id] = float64(n.thr) + (next-float64(n.thr))/3
		l, ls := rec(n.left)
		r, rs := rec(n.right)
		left[id], right[id], samples[id] = l, r, ls+rs
		return id, ls + rs
	}
	rec(0)
	return
}

func TestImportRoundTrip(t *testing.T) {
	data := gaussData(2000, 3, 4)
	f := Fit(data, 3, Options{Trees: 20, SampleSize: 256, Seed: 2})
	imported := make([]*Tree, 0, 20)
	for _, tr := range f.Trees() {
		ft, th, l, r, s := sklearnArrays(tr)
		it, err := ImportTree(ft, th, l, r, s, 256)
		require.NoError(t, err)
		require.Equal(t, tr.NumNodes(), it.NumNodes())
		require.Equal(t, tr.Depth(), it.Depth())
		assert.Equal(t, 256, checkShape(t, it, 8))
		imported = append(imported, it)
	}
	g := New(3, imported)
	x := make([]float64, 3)
	for i := range 2000 {
		for j := range x {
			// float32 inputs, as scikit-learn scores.
			x[j] = float64(data[i*3+j])
		}
		require.Equal(t, f.Score(x), g.Score(x))
	}
}

func TestImportHandmade(t *testing.T) {
	// root: x0 <= 1.5 ? (x1 <= -0.25 ? leaf(3) : leaf(1)) : leaf(4), in
	// scikit-learn's preorder numbering.
	feature := []int{0, 1, -2, -2, -2}
	thr := []float64{1.5, -0.25, -2, -2, -2}
	left := []int{1, 2, -1, -1, -1}
	right := []int{4, 3, -1, -1, -1}
	ns := []int{8, 4, 3, 1, 4}
	tr, err := ImportTree(feature, thr, left, right, ns, 8)
	require.NoError(t, err)
	require.Equal(t, 5, tr.NumNodes())
	assert.Equal(t, 2, tr.Depth())
	assert.Equal(t, 8, tr.SampleSize())
	assert.Equal(t, 2+AvgPathLength(3), tr.PathLength([]float64{1.5, -0.25}))
	assert.Equal(t, 2+AvgPathLength(1), tr.PathLength([]float64{0, 0}))
	assert.Equal(t, 1+AvgPathLength(4), tr.PathLength([]float64{1.6, -9}))
	assert.Equal(t, 8, checkShape(t, tr, 2))

	// A float64 threshold between float32 values keeps float32 routing.
	x32 := float32(0.1)
	tr, err = ImportTree([]int{0, -2, -2}, []float64{float64(x32) + 1e-12, -2, -2}, []int{1, -1, -1}, []int{2, -1, -1}, []int{2, 1, 1}, 2)
	require.NoError(t, err)
	assert.Equal(t, 1.0, tr.PathLength([]float64{float64(x32)}))
	assert.Equal(t, 1.0, tr.PathLength([]float64{float64(math.Nextafter32(x32, -1))}))
	assert.Equal(t, 1.0, tr.PathLength([]float64{float64(math.Nextafter32(x32, 1))}))
	assert.Equal(t, 3, route(tr, []float64{float64(x32)}), "the left leaf, after the split's 3 words")
	assert.Equal(t, 4, route(tr, []float64{float64(math.Nextafter32(x32, 1))}))
}

func TestImportErrors(t *testing.T) {
	type arrays struct {
		feature           []int
		thr               []float64
		left, right, size []int
		psi               int
	}
	valid := func() *arrays {
		return &arrays{[]int{0, -2, -2}, []float64{0, -2, -2}, []int{1, -1, -1}, []int{2, -1, -1}, []int{2, 1, 1}, 2}
	}
	a := valid()
	_, err := ImportTree(a.feature, a.thr, a.left, a.right, a.size, a.psi)
	require.NoError(t, err)

	cases := map[string]func(a *arrays){
		"empty":         func(a *arrays) { *a = arrays{psi: 2} },
		"length":        func(a *arrays) { a.thr = a.thr[:2] },
		"child range":   func(a *arrays) { a.right[0] = 3 },
		"self loop":     func(a *arrays) { a.left[0] = 0 },
		"shared child":  func(a *arrays) { a.right[0] = 1 },
		"feature":       func(a *arrays) { a.feature[0] = -2 },
		"nan threshold": func(a *arrays) { a.thr[0] = math.NaN() },
		"leaf size":     func(a *arrays) { a.size[1] = MaxSampleSize + 1 },
		"sample size":   func(a *arrays) { a.psi = 0 },
		"count sum":     func(a *arrays) { a.psi = 3 },
		"too deep": func(a *arrays) {
			// A chain of 16 splits, each with a leaf on its left.
			*a = arrays{psi: 17}
			for i := range 16 {
				a.feature = append(a.feature, 0, -2)
				a.thr = append(a.thr, 0, -2)
				a.left = append(a.left, 2*i+1, -1)
				a.right = append(a.right, 2*i+2, -1)
				a.size = append(a.size, 17-i, 1)
			}
			a.feature, a.thr, a.left, a.right, a.size = append(a.feature, -2), append(a.thr, -2), append(a.left, -1), append(a.right, -1), append(a.size, 1)
		},
	}
	for name, mutate := range cases {
		a := valid()
		mutate(a)
		_, err := ImportTree(a.feature, a.thr, a.left, a.right, a.size, a.psi)
		assert.Error(t, err, name)
	}
}

type sklearnForest struct {
	MaxSamples int `json:"max_samples_"`
	Trees      []struct {
		Features      []int     `json:"features"` // tree feature index -> column
		Feature       []int     `json:"feature"`
		Threshold     []float64 `json:"threshold"`
		ChildrenLeft  []int     `json:"children_left"`
		ChildrenRight []int     `json:"children_right"`
		NNodeSamples  []int     `json:"n_node_samples"`
	} `json:"trees"`
}

func readCSV(t *testing.T, path string) (header []string, rows [][]string) {
	t.Helper()
	fh, err := os.Open(path)
	require.NoError(t, err)
	defer fh.Close()
	all, err := csv.NewReader(fh).ReadAll()
	require.NoError(t, err)
	require.NotEmpty(t, all)
	return all[0], all[1:]
}

func column(t *testing.T, header []string, rows [][]string, name string) []float64 {
	t.Helper()
	c := -1
	for i, h := range header {
		if h == name {
			c = i
		}
	}
	require.GreaterOrEqual(t, c, 0, "column %q", name)
	out := make([]float64, len(rows))
	for i, r := range rows {
		v, err := strconv.ParseFloat(r[c], 64)
		require.NoError(t, err)
		out[i] = v
	}
	return out
}

// TestSklearnSeedReproduction scores the tutorial's CPU series with the 100
// trees scikit-learn 1.2.1 fitted to it and compares with its score_samples.
func TestSklearnSeedReproduction(t *testing.T) {
	dir := filepath.Join(sharedData, "seed")
	if _, err := os.Stat(filepath.Join(dir, "seed_trees.json")); err != nil {
		t.Skipf("reference data not available: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "seed_trees.json"))
	require.NoError(t, err)
	var sk sklearnForest
	require.NoError(t, json.Unmarshal(raw, &sk))
	require.Equal(t, 256, sk.MaxSamples)
	require.Len(t, sk.Trees, 100)

	trees := make([]*Tree, len(sk.Trees))
	for i, st := range sk.Trees {
		// Map tree-local feature indices to columns (identity here: one
		// feature); leaves keep their placeholder.
		feat := make([]int, len(st.Feature))
		for j, f := range st.Feature {
			feat[j] = f
			if st.ChildrenLeft[j] != -1 {
				feat[j] = st.Features[f]
			}
		}
		trees[i], err = ImportTree(feat, st.Threshold, st.ChildrenLeft, st.ChildrenRight, st.NNodeSamples, sk.MaxSamples)
		require.NoError(t, err, "tree %d", i)
		require.LessOrEqual(t, trees[i].Depth(), 8)
	}
	f := New(1, trees)

	h, rows := readCSV(t, filepath.Join(dir, "seed_cpu.csv"))
	values := column(t, h, rows, "value")
	hs, rowsS := readCSV(t, filepath.Join(dir, "seed_sklearn.csv"))
	want := column(t, hs, rowsS, "score_samples")
	require.Len(t, values, 1440)
	require.Len(t, want, 1440)
	require.Equal(t, values, column(t, hs, rowsS, "value"))

	maxDiff := 0.0
	for i, v := range values {
		x := []float64{float64(float32(v))} // scikit-learn scores float32 input
		got := f.Score(x)
		require.InDelta(t, -want[i], got, 1e-9, "row %d value %v", i, v)
		maxDiff = max(maxDiff, math.Abs(got+want[i]))
		require.InDelta(t, got, refScore(f, x), 1e-15)
	}
	t.Logf("max |score - (-score_samples)| over %d rows: %.3g", len(values), maxDiff)
}
