package main

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestROCAUCHandWorked(t *testing.T) {
	// Anomalies score 0.4 and 0.8; normal rows 0.1, 0.4, 0.4, 0.9.
	// Pairs (anomaly beats normal = 1, tie = 1/2):
	//   0.4 vs 0.1, 0.4, 0.4, 0.9 -> 1 + 1/2 + 1/2 + 0 = 2
	//   0.8 vs 0.1, 0.4, 0.4, 0.9 -> 1 + 1 + 1 + 0     = 3
	// AUC = 5 / (2*4) = 0.625. By ranks: 0.1->1, the three 0.4s share
	// (2+3+4)/3 = 3, 0.8->5, 0.9->6; U = (3+5) - 2*3/2 = 5.
	scores := []float64{0.1, 0.4, 0.4, 0.8, 0.4, 0.9}
	labels := []bool{false, true, false, true, false, false}
	auc, err := rocAUC(scores, labels)
	require.NoError(t, err)
	assert.Equal(t, 0.625, auc)
}

func TestROCAUCEdgeCases(t *testing.T) {
	labels := []bool{false, false, true, true}
	auc, err := rocAUC([]float64{1, 2, 3, 4}, labels)
	require.NoError(t, err)
	assert.Equal(t, 1.0, auc)
	auc, err = rocAUC([]float64{4, 3, 2, 1}, labels)
	require.NoError(t, err)
	assert.Equal(t, 0.0, auc)
	auc, err = rocAUC([]float64{7, 7, 7, 7}, labels)
	require.NoError(t, err)
	assert.Equal(t, 0.5, auc, "all tied")

	_, err = rocAUC([]float64{1, 2}, []bool{true, true})
	assert.Error(t, err, "one class")
	_, err = rocAUC([]float64{1, 2}, []bool{true})
	assert.Error(t, err, "length mismatch")
	_, err = rocAUC([]float64{1, math.NaN()}, []bool{true, false})
	assert.Error(t, err, "NaN score")
}

// TestROCAUCBruteForce checks the rank formula against counting all pairs,
// on data with many ties.
func TestROCAUCBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		n := 2 + r.IntN(300)
		scores := make([]float64, n)
		labels := make([]bool, n)
		for i := range n {
			scores[i] = float64(r.IntN(10)) / 10
			labels[i] = r.IntN(3) == 0
		}
		labels[0], labels[1] = true, false
		var wins float64
		var pos, neg int
		for i := range n {
			if !labels[i] {
				neg++
				continue
			}
			pos++
			for j := range n {
				if labels[j] {
					continue
				}
				switch {
				case scores[i] > scores[j]:
					wins++
				case scores[i] == scores[j]:
					wins += 0.5
				}
			}
		}
		auc, err := rocAUC(scores, labels)
		require.NoError(t, err)
		require.InDelta(t, wins/float64(pos*neg), auc, 1e-12)
	}
}

func TestReadLabelled(t *testing.T) {
	d, err := readLabelled(strings.NewReader("f0,f1,label\n1,2.5,0\n-3,4e2,1\n0.1,0,0\n"))
	require.NoError(t, err)
	assert.Equal(t, 2, d.Dims)
	assert.Equal(t, 3, d.Rows())
	assert.Equal(t, []float32{1, 2.5, -3, 400, 0.1, 0}, d.X)
	assert.Equal(t, []bool{false, true, false}, d.Labels)

	for name, in := range map[string]string{
		"no label column": "f0,f1\n1,2\n",
		"bad number":      "f0,label\nx,0\n",
		"ragged":          "f0,f1,label\n1,2,0\n1,0\n",
		"no rows":         "f0,label\n",
		"empty":           "",
	} {
		_, err := readLabelled(strings.NewReader(in))
		assert.Error(t, err, name)
	}
}

func TestEvalAUCSynthetic(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	d := &labelled{Dims: 2}
	for i := range 3000 {
		out := i%100 == 0
		scale := 1.0
		if out {
			scale = 6
		}
		d.X = append(d.X, float32(r.NormFloat64()*scale), float32(r.NormFloat64()*scale))
		d.Labels = append(d.Labels, out)
	}
	res, err := evalAUC(d, 50, 128, 3)
	require.NoError(t, err)
	require.Len(t, res.AUCs, 3)
	assert.Greater(t, res.Mean, 0.9)
	assert.Greater(t, res.Std, 0.0)
	again, err := evalAUC(d, 50, 128, 3)
	require.NoError(t, err)
	assert.Equal(t, res, again, "deterministic regardless of scheduling")
}
