package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// oddsDir holds the ODDS data sets, beside the repository.
var oddsDir = filepath.Join("..", "..", "..", "shared", "data", "odds")

// sklearnAUC is scikit-learn 1.2.1's mean ROC AUC (100 trees, 256 samples,
// 10 seeds, fitted and scored on all rows), from the table in
// shared/data/README.md.
var sklearnAUC = map[string]float64{
	"http":        0.9996,
	"forestcover": 0.8774,
	"smtp":        0.9043,
	"shuttle":     0.9970,
	"mammography": 0.8615,
	"annthyroid":  0.8184,
	"satellite":   0.7008,
	"pima":        0.6707,
	"breastw":     0.9873,
	"arrhythmia":  0.8090,
	"ionosphere":  0.8563,
}

// TestODDSMatchesScikitLearn runs the paper's batch protocol on every data
// set in datasets.json and requires the mean AUC within 0.02 of
// scikit-learn's.
func TestODDSMatchesScikitLearn(t *testing.T) {
	if testing.Short() {
		t.Skip("long-running: evaluates 11 data sets")
	}
	raw, err := os.ReadFile(filepath.Join(oddsDir, "datasets.json"))
	if err != nil {
		t.Skipf("reference data not available: %v", err)
	}
	var meta map[string]struct {
		Rows int `json:"rows"`
		Dims int `json:"dims"`
	}
	require.NoError(t, json.Unmarshal(raw, &meta))
	names := make([]string, 0, len(meta))
	for name := range meta {
		names = append(names, name)
	}
	slices.Sort(names)

	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			want, ok := sklearnAUC[name]
			require.True(t, ok, "no reference AUC for %s", name)
			start := time.Now()
			d, err := loadLabelledCSV(filepath.Join(oddsDir, name+".csv.gz"))
			require.NoError(t, err)
			require.Equal(t, meta[name].Rows, d.Rows())
			require.Equal(t, meta[name].Dims, d.Dims)
			loaded := time.Since(start)

			res, err := evalAUC(d, 100, 256, 10)
			require.NoError(t, err)
			t.Logf("%-12s AUC %.4f ± %.4f (scikit-learn %.4f, diff %+.4f); load %v, eval %v",
				name, res.Mean, res.Std, want, res.Mean-want, loaded.Round(time.Millisecond), (time.Since(start) - loaded).Round(time.Millisecond))
			assert.InDelta(t, want, res.Mean, 0.02)
		})
	}
}
