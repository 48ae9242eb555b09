package detector

import (
	"math/bits"
	"time"
)

// IncidentConfig turns per-point verdicts into incidents: one start and one
// end per episode of anomalies, instead of a flag on every point.
type IncidentConfig struct {
	// An incident opens when at least OpenAfter of the last OpenWindow
	// scored points were anomalous. 1 of 1 opens on the first anomalous
	// point, so a single spike is not missed.
	OpenAfter  int
	OpenWindow int
	// An open incident ends on the CloseAfter-th consecutive normal point.
	CloseAfter int
	// Cooldown is how many scored points after an end no new incident may
	// open on the same series.
	Cooldown int
	// SuppressRepeats, when > 0, halves the score of a flag that neither
	// continues a run of flags nor beats the highest score since the
	// episode's first flag, within this many points of the last flag (see
	// repeats.go). Per-series models only, not joined (Vector) ones.
	SuppressRepeats int
	// NewNormalAfter (nanoseconds) is how long a one-input series' incident
	// holds its points back from the model (longrun.go): a sustained
	// anomaly stays one this long unless it ends first. 0 holds nothing.
	NewNormalAfter int64
}

// DefaultIncidentConfig opens on the first anomalous point and closes after
// five normal ones.
func DefaultIncidentConfig() IncidentConfig {
	return IncidentConfig{OpenAfter: 1, OpenWindow: 1, CloseAfter: 5, Cooldown: 0, SuppressRepeats: 72, NewNormalAfter: int64(30 * time.Minute)}
}

// Transition marks the points where an incident starts or ends.
type Transition uint8

const (
	NoTransition Transition = iota
	Started
	Ended
)

func (t Transition) String() string {
	switch t {
	case Started:
		return "started"
	case Ended:
		return "ended"
	}
	return ""
}

// incident is one series' incident state.
type incident struct {
	recent   uint64 // verdict bits of the last OpenWindow scored points, newest in bit 0
	open     bool
	id       uint64
	start    int64 // time of the opening point
	peak     float64
	quiet    int // consecutive normal points while open
	cooldown int // scored points left before a new incident may open
}

// update folds a scored point's verdict into the incident state and fills
// the verdict's incident fields. away says that the point, flagged or not,
// is still well away from the series' level before the incident, on the
// side of the incident's held points (see longRun.away): a sustained
// change whose scores waver about the threshold stays one open incident.
func (in *incident) update(c *IncidentConfig, key uint64, t int64, v *Verdict, away bool) {
	in.recent = in.recent<<1 | uint64(b2u(v.Anomaly))
	if c.OpenWindow < 64 {
		in.recent &= 1<<c.OpenWindow - 1
	}
	if in.open {
		v.IncidentID = in.id
		if v.Anomaly || away {
			in.quiet = 0
			in.peak = max(in.peak, v.Score)
			return
		}
		in.quiet++
		if in.quiet >= c.CloseAfter {
			v.Incident = Ended
			v.IncidentDuration = t - in.start
			v.IncidentPeak = in.peak
			in.open = false
			in.cooldown = c.Cooldown
			in.recent = 0
		}
		return
	}
	if in.cooldown > 0 {
		in.cooldown--
		return
	}
	if v.Anomaly && bits.OnesCount64(in.recent) >= c.OpenAfter {
		in.open, in.start, in.peak, in.quiet = true, t, v.Score, 0
		// The id is stable for the same series and start, so a replay of the
		// same data names its incidents alike.
		in.id = mix64(key ^ mix64(uint64(t)))
		v.Incident, v.IncidentID = Started, in.id
	}
}

func b2u(b bool) uint {
	if b {
		return 1
	}
	return 0
}

// mix64 is the splitmix64 finaliser.
func mix64(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
