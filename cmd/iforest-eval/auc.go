package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"sync"

	"github.com/otel-iforest/iforest/internal/forest"
)

// runAUC implements "iforest-eval auc": for seeds 1..N it fits a forest on
// all rows of a labelled CSV, scores all rows and reports the mean and
// standard deviation of the ROC AUC — the protocol of the isolation forest
// paper's batch experiments.
func runAUC(args []string) error {
	fs := flag.NewFlagSet("auc", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	trees := fs.Int("trees", 100, "trees per forest")
	samples := fs.Int("samples", 256, "subsample size psi per tree")
	seeds := fs.Int("seeds", 10, "number of seeds (1..N) to average over")
	asJSON := fs.Bool("json", false, `print {"auc_mean","auc_std","rows"} as JSON`)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: iforest-eval auc [flags] FILE.csv[.gz]\n\nFILE has header f0,...,fN,label (label 1 = anomaly).\n\nflags:")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return usagef("auc: want exactly one CSV file, got %d arguments", fs.NArg())
	}
	switch {
	case *trees < 1:
		return usagef("auc: -trees must be >= 1")
	case *samples < 1 || *samples > forest.MaxSampleSize:
		return usagef("auc: -samples must be in [1, %d]", forest.MaxSampleSize)
	case *seeds < 1:
		return usagef("auc: -seeds must be >= 1")
	}

	data, err := loadLabelledCSV(fs.Arg(0))
	if err != nil {
		return err
	}
	res, err := evalAUC(data, *trees, *samples, *seeds)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(os.Stdout).Encode(struct {
			Mean float64 `json:"auc_mean"`
			Std  float64 `json:"auc_std"`
			Rows int     `json:"rows"`
		}{res.Mean, res.Std, data.Rows()})
	}
	fmt.Printf("%s: AUC %.4f ± %.4f over %d seeds (%d rows, %d dims, %d trees, psi %d)\n",
		fs.Arg(0), res.Mean, res.Std, *seeds, data.Rows(), data.Dims, *trees, *samples)
	return nil
}

// aucResult summarises the per-seed AUCs.
type aucResult struct {
	AUCs      []float64 // index s-1 holds seed s
	Mean, Std float64   // Std is the sample standard deviation (0 for one seed)
}

// evalAUC fits and scores one forest per seed 1..seeds. Seeds run in
// parallel; when there are fewer seeds than CPUs each seed also splits its
// rows, so a single seed on a large set still uses every core.
func evalAUC(d *labelled, trees, samples, seeds int) (aucResult, error) {
	procs := runtime.GOMAXPROCS(0)
	seedWorkers := min(procs, seeds)
	rowWorkers := max(1, procs/seedWorkers)

	aucs := make([]float64, seeds)
	errs := make([]error, seeds)
	next := make(chan int)
	var wg sync.WaitGroup
	for range seedWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			scores := make([]float64, d.Rows())
			for s := range next {
				f := forest.Fit(d.X, d.Dims, forest.Options{Trees: trees, SampleSize: samples, Seed: uint64(s + 1)})
				scoreRows(f, d, scores, rowWorkers)
				aucs[s], errs[s] = rocAUC(scores, d.Labels)
			}
		}()
	}
	for s := range seeds {
		next <- s
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return aucResult{}, err
	}

	res := aucResult{AUCs: aucs}
	for _, a := range aucs {
		res.Mean += a
	}
	res.Mean /= float64(seeds)
	if seeds > 1 {
		var ss float64
		for _, a := range aucs {
			ss += (a - res.Mean) * (a - res.Mean)
		}
		res.Std = math.Sqrt(ss / float64(seeds-1))
	}
	return res, nil
}

// scoreRows writes f's score of every row of d into scores, using workers
// goroutines on contiguous chunks.
func scoreRows(f *forest.Forest, d *labelled, scores []float64, workers int) {
	rows := d.Rows()
	chunk := (rows + workers - 1) / workers
	var wg sync.WaitGroup
	for lo := 0; lo < rows; lo += chunk {
		hi := min(lo+chunk, rows)
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := make([]float64, d.Dims)
			for r := lo; r < hi; r++ {
				for j, v := range d.X[r*d.Dims : (r+1)*d.Dims] {
					x[j] = float64(v)
				}
				scores[r] = f.Score(x)
			}
		}()
	}
	wg.Wait()
}

// rocAUC returns the area under the ROC curve of scores (higher = more
// anomalous) against labels (true = anomaly), computed as the Mann–Whitney
// U statistic: the probability that a random anomaly outscores a random
// normal point, ties counting one half. Tied scores get the average of the
// ranks they span, which is exactly that tie rule.
func rocAUC(scores []float64, labels []bool) (float64, error) {
	if len(scores) != len(labels) {
		return 0, fmt.Errorf("auc: %d scores for %d labels", len(scores), len(labels))
	}
	order := make([]int, len(scores))
	for i := range order {
		if math.IsNaN(scores[i]) {
			return 0, fmt.Errorf("auc: score %d is NaN", i)
		}
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(scores[a], scores[b]) })

	var pos int
	var rankSum float64 // sum of the positives' (1-based, tie-averaged) ranks
	for lo := 0; lo < len(order); {
		hi := lo + 1
		for hi < len(order) && scores[order[hi]] == scores[order[lo]] {
			hi++
		}
		avgRank := float64(lo+1+hi) / 2 // mean of ranks lo+1..hi
		for _, i := range order[lo:hi] {
			if labels[i] {
				pos++
				rankSum += avgRank
			}
		}
		lo = hi
	}
	neg := len(scores) - pos
	if pos == 0 || neg == 0 {
		return 0, fmt.Errorf("auc: need both classes, have %d anomalies and %d normal rows", pos, neg)
	}
	u := rankSum - float64(pos)*float64(pos+1)/2
	return u / (float64(pos) * float64(neg)), nil
}
