package iforestprocessor

import (
	"math"

	"github.com/cespare/xxhash/v2"
	"go.opentelemetry.io/collector/pdata/pcommon"
)

// Series keys are 64-bit hashes built without string concatenation. The hash
// is fixed (not per-process random) so that keys, and so the models' random
// streams, are the same on every run and machine.

// mix is the splitmix64 finalizer: a cheap bijection with good avalanche.
func mix(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// combine folds b into a, order-dependent.
func combine(a, b uint64) uint64 {
	return mix(a ^ (b + 0x9e3779b97f4a7c15 + a<<6 + a>>2))
}

func hashString(s string) uint64 { return xxhash.Sum64String(s) }

// hashMap is independent of attribute order: two maps with the same
// key/value pairs hash alike however a client ordered them.
func hashMap(m pcommon.Map) uint64 {
	h, _ := hashAttrs(m, nil)
	return h
}

// hashAttrs is hashMap leaving out the verdict attributes of own (when not
// nil): a datapoint that carries them (it went through another iforest
// processor, or was replayed) keeps its series identity, while any other
// attribute, under the prefix or not, tells series apart. found says
// whether any verdict attribute was there.
func hashAttrs(m pcommon.Map, own *attrNames) (h uint64, found bool) {
	var sum uint64
	n := 0
	m.Range(func(k string, v pcommon.Value) bool {
		if own != nil && own.IsVerdict(k) {
			found = true
			return true
		}
		sum += mix(combine(hashString(k), hashValue(v)))
		n++
		return true
	})
	return mix(sum ^ uint64(n)), found
}

// Type tags keep e.g. the string "1" and the int 1 apart.
const (
	tagEmpty uint64 = iota + 1
	tagStr
	tagInt
	tagDouble
	tagBool
	tagBytes
	tagSlice
	tagMap
)

func hashValue(v pcommon.Value) uint64 {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		return combine(tagStr, hashString(v.Str()))
	case pcommon.ValueTypeInt:
		return combine(tagInt, uint64(v.Int()))
	case pcommon.ValueTypeDouble:
		return combine(tagDouble, math.Float64bits(v.Double()))
	case pcommon.ValueTypeBool:
		if v.Bool() {
			return combine(tagBool, 1)
		}
		return combine(tagBool, 0)
	case pcommon.ValueTypeBytes:
		return combine(tagBytes, xxhash.Sum64(v.Bytes().AsRaw()))
	case pcommon.ValueTypeSlice:
		h := tagSlice
		s := v.Slice()
		for i := 0; i < s.Len(); i++ {
			h = combine(h, hashValue(s.At(i)))
		}
		return h
	case pcommon.ValueTypeMap:
		return combine(tagMap, hashMap(v.Map()))
	}
	return tagEmpty
}
