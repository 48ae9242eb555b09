package anomalyeventsconnector

import (
	"hash/maphash"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// An entity is what group_by names: the values of those resource
// attributes (the ones present) identify it. The anomaly rate without
// group_by takes the whole resource as the entity.

type entity struct {
	key uint64
	ok  bool // the resource names an entity
}

// entityHasher hashes entities. The seed is random per process, so that a
// client cannot make two entities collide on purpose.
type entityHasher struct {
	seed maphash.Seed
	keys []string // group_by; empty: every resource attribute
}

func newEntityHasher(keys []string) entityHasher {
	return entityHasher{seed: maphash.MakeSeed(), keys: keys}
}

func (e *entityHasher) of(res pcommon.Map) entity {
	if len(e.keys) == 0 {
		// The whole resource, an empty one included (a host metrics
		// receiver's without resource detection). Order-independent: a
		// sum of the pairs' hashes.
		var h uint64
		for k, v := range res.All() {
			h += e.pair(k, v)
		}
		return entity{key: h, ok: true}
	}
	var h maphash.Hash
	h.SetSeed(e.seed)
	ok := false
	for _, k := range e.keys {
		if v, found := res.Get(k); found {
			ok = true
			_, _ = h.WriteString(k)
			_ = h.WriteByte(0)
			_ = h.WriteByte(byte(v.Type()))
			_, _ = h.WriteString(v.AsString())
			_ = h.WriteByte(0)
		}
	}
	return entity{key: h.Sum64(), ok: ok}
}

func (e *entityHasher) pair(k string, v pcommon.Value) uint64 {
	var h maphash.Hash
	h.SetSeed(e.seed)
	_, _ = h.WriteString(k)
	_ = h.WriteByte(0)
	_ = h.WriteByte(byte(v.Type()))
	_, _ = h.WriteString(v.AsString())
	return h.Sum64()
}

// attrs copies the entity's attributes of res into dst: the group_by ones
// present, in group_by order, or all.
func (e *entityHasher) attrs(res, dst pcommon.Map) {
	if len(e.keys) == 0 {
		res.CopyTo(dst)
		return
	}
	for _, k := range e.keys {
		if v, ok := res.Get(k); ok {
			v.CopyTo(dst.PutEmpty(k))
		}
	}
}
