package nab

import (
	"slices"
	"testing"
)

func TestCountAlarms(t *testing.T) {
	flags := func(n int, rows ...int) []bool {
		d := make([]bool, n)
		for _, r := range rows {
			d[r] = true
		}
		return d
	}
	spans := []Span{{First: 20, Last: 29}, {First: 60, Last: 64}}
	for _, tc := range []struct {
		name     string
		detected []bool
		from     int
		grace    float64
		want     Alarms
	}{
		{"nothing", flags(100), 0, 0, Alarms{Windows: 2, FirstHit: []int{-1, -1}}},
		{"hits and one episode of three flags 6 apart", flags(100, 22, 62, 80, 86, 92), 0, 0,
			Alarms{Windows: 2, WindowsHit: 2, FalseEpisodes: 1, FirstHit: []int{2, 2}}},
		{"7 apart is a new episode", flags(100, 80, 87), 0, 0,
			Alarms{Windows: 2, FalseEpisodes: 2, FirstHit: []int{-1, -1}}},
		{"flags before from are not false alarms", flags(100, 3, 5, 40), 10, 0,
			Alarms{Windows: 2, FalseEpisodes: 1, FirstHit: []int{-1, -1}}},
		{"the grace span after a window", flags(100, 35, 40), 0, 1,
			Alarms{Windows: 2, FalseEpisodes: 1, FirstHit: []int{-1, -1}}},
		{"a flag in the grace span does not hit the window", flags(100, 30), 0, 1,
			Alarms{Windows: 2, FirstHit: []int{-1, -1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := CountAlarms(tc.detected, spans, tc.from, tc.grace)
			if got.Windows != tc.want.Windows || got.WindowsHit != tc.want.WindowsHit ||
				got.FalseEpisodes != tc.want.FalseEpisodes || !slices.Equal(got.FirstHit, tc.want.FirstHit) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
