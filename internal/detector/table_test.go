package detector

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// The table agrees with a map through any mix of inserts and deletes,
// including keys that collide in the index.
func TestTableMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var tb table
	ref := map[uint64]uint32{}
	keys := []uint64{}
	for step := range 200000 {
		switch op := rng.IntN(10); {
		case op < 6 || len(keys) == 0:
			k := rng.Uint64() % 5000 // small key space: many repeats and collisions
			_, known := ref[k]
			if s := tb.find(k); s != nil {
				require.True(t, known)
				s.b.n++
				ref[k]++
				continue
			}
			require.False(t, known, "step %d: key %d lost", step, k)
			tb.insert(k).b.n = 1
			ref[k] = 1
			keys = append(keys, k)
		default:
			i := rng.IntN(len(keys))
			k := keys[i]
			keys[i] = keys[len(keys)-1]
			keys = keys[:len(keys)-1]
			j := tb.lookup(k)
			require.GreaterOrEqual(t, j, 0, "step %d", step)
			tb.removeAt(j)
			delete(ref, k)
		}
		if step%10000 == 0 {
			require.Len(t, tb.slots, len(ref))
			for k, n := range ref {
				s := tb.find(k)
				require.NotNil(t, s)
				require.Equal(t, n, s.b.n)
			}
		}
	}
	// Empty it entirely.
	for len(tb.slots) > 0 {
		tb.removeAt(rng.IntN(len(tb.slots)))
	}
	require.Nil(t, tb.find(keys[0]))
}
