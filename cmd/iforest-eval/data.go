package main

import (
	"bufio"
	"compress/gzip"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// labelled is a batch data set: row-major float32 features and a label per
// row (true = anomaly).
type labelled struct {
	X      []float32
	Dims   int
	Labels []bool
}

func (d *labelled) Rows() int { return len(d.Labels) }

// loadLabelledCSV reads a CSV with header f0,...,fN,label (gzip-compressed
// if the name ends in .gz). A label is an anomaly iff it parses to non-zero.
func loadLabelledCSV(path string) (*labelled, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	var r io.Reader = bufio.NewReaderSize(fh, 1<<20)
	if strings.HasSuffix(path, ".gz") {
		gz, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		defer gz.Close()
		r = gz
	}
	d, err := readLabelled(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

func readLabelled(r io.Reader) (*labelled, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("reading header: %w", err)
	}
	if len(header) < 2 || header[len(header)-1] != "label" {
		return nil, fmt.Errorf("header %q: want f0,...,fN,label", strings.Join(header, ","))
	}
	d := &labelled{Dims: len(header) - 1}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err // csv errors carry the line number
		}
		for j, field := range rec {
			// Parse as float64 and then round to float32, as scikit-learn's
			// astype(float32) does, so both see the same inputs.
			v, err := strconv.ParseFloat(field, 64)
			if err != nil {
				return nil, fmt.Errorf("line %d column %d: %w", line, j+1, err)
			}
			if j < d.Dims {
				d.X = append(d.X, float32(v))
			} else {
				d.Labels = append(d.Labels, v != 0)
			}
		}
	}
	if d.Rows() == 0 {
		return nil, fmt.Errorf("no data rows")
	}
	return d, nil
}
