package nab

// What a detector's own verdicts (its detected flags, at its configured
// threshold) mean to the people it pages, as opposed to NAB's score at the
// best threshold: how many windows it hit and how many separate false
// alarms it raised.

// EpisodeGap is the most rows between two flags of one alarm episode:
// consecutive flags at most this many rows apart are one episode.
const EpisodeGap = 6

// Alarms are a detector's verdicts on one series, counted.
type Alarms struct {
	Windows, WindowsHit int
	// FalseEpisodes are runs of flags outside every window (and outside
	// the grace span after each, if any), flags at most EpisodeGap rows
	// apart counting once.
	FalseEpisodes int
	// FirstHit is, per window, the row offset of its first flag from the
	// window's first row, or -1 if it was missed.
	FirstHit []int
}

// CountAlarms counts detected against spans. Flags before row from are
// ignored as false alarms (a warm-up or NAB's probation); a window is hit
// by a flag anywhere in it. grace, if > 0, is how many widths of a window
// after its last row flags are not false alarms (an incident may outlast
// its label while a lasting change is accepted as the new normal).
func CountAlarms(detected []bool, spans []Span, from int, grace float64) Alarms {
	a := Alarms{Windows: len(spans), FirstHit: make([]int, len(spans))}
	excused := make([]bool, len(detected))
	for k, sp := range spans {
		a.FirstHit[k] = -1
		end := sp.Last + int(grace*float64(sp.Width()))
		for i := max(sp.First, 0); i <= end && i < len(detected); i++ {
			excused[i] = true
			if i <= sp.Last && detected[i] && a.FirstHit[k] < 0 {
				a.FirstHit[k] = i - sp.First
			}
		}
		if a.FirstHit[k] >= 0 {
			a.WindowsHit++
		}
	}
	last := -EpisodeGap - 1
	for i := max(from, 0); i < len(detected); i++ {
		if !detected[i] || excused[i] {
			continue
		}
		if i-last > EpisodeGap {
			a.FalseEpisodes++
		}
		last = i
	}
	return a
}
