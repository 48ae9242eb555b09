package anomalyeventsconnector

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/otel-iforest/iforest/connector/internal/metadata"
	"github.com/otel-iforest/iforest/internal/verdict"
)

// Entity incidents (group_by). When a host fails, forty of its series
// depart at once; one page that lists them says more than forty pages.
// Incidents of one entity's series whose starts lie within group_window of
// the first one (datapoint time) form one entity incident.
//
// Its anomaly.started is sent once the window is over, so that it lists
// every series that departed together (what Alertmanager's group_wait
// does): when the entity's datapoints have passed the end of the window,
// or, if they stop coming, group_window after the connector saw the first
// start (the collector's clock). A page thus comes at most group_window
// late, complete. A series that joins after that (its start reached the
// connector late) is counted in the end event and sends nothing itself.
// anomaly.ended comes when the last member's incident ended.
//
// Time is the datapoints' wherever it can be, so that replayed or delayed
// data groups as it happened; the collector's clock only sends the
// started event of an entity whose data stopped.
//
// State is bounded: at most max_open_groups entity incidents, and 100 times
// as many member incidents in all; beyond, the oldest entity incident is
// dropped (its started event sent first if it was not yet). The ends of its
// members are then reported per series.

const (
	// maxListed bounds the series an entity incident lists.
	maxListed = 20
	// bodyListed is how many of them its body names.
	bodyListed = 3
	// membersPerGroup times max_open_groups bounds the member incidents
	// tracked.
	membersPerGroup = 100
)

type grouper struct {
	mu         sync.Mutex
	hasher     entityHasher
	window     int64
	maxGroups  int
	maxTracked int

	entities       map[uint64][]*group // open groups by entity, oldest first
	members        map[uint64]*group   // open member incident id -> its group
	oldest, newest *group              // every open group, by creation
	n, tracked     int                 // groups; member ids held
	pending        []*group            // started event not sent yet
	closing        []*group            // last member ended in this batch
}

// group is one entity incident.
type group struct {
	id     uint64 // the first member's incident id
	entity uint64
	attrs  pcommon.Map // the entity's attributes
	// Datapoint time: the first start, the last end, and the latest
	// datapoint of the entity seen (its clock).
	first, last, clock int64
	seen               int64 // the collector's clock when the group began
	count, open        int   // members joined; members not ended
	ids                []uint64
	listed             []member // highest score first
	top, peak          float64
	out, gone          bool // started event sent; group dropped
	prev, next         *group
}

type member struct {
	metric string
	attrs  pcommon.Map // the datapoint's own attributes
	score  float64
	id     uint64
}

// transition is an incident start or end taken for grouping, with the
// datapoint that carried it (the batch's, read-only).
type transition struct {
	start       bool
	ts          int64
	id          uint64
	entity      entity
	rm          pmetric.ResourceMetrics
	sm          pmetric.ScopeMetrics
	m           pmetric.Metric
	p           point
	score, peak float64
}

// entityClock is an entity's latest datapoint time in a batch.
type entityClock struct {
	key uint64
	ts  int64
}

func newGrouper(cfg *Config) *grouper {
	return &grouper{
		hasher:     newEntityHasher(cfg.GroupBy),
		window:     int64(cfg.GroupWindow),
		maxGroups:  cfg.MaxOpenGroups,
		maxTracked: membersPerGroup * cfg.MaxOpenGroups,
		entities:   map[uint64][]*group{},
		members:    map[uint64]*group{},
	}
}

func (g *grouper) entityOf(res pcommon.Map) entity {
	if len(g.hasher.keys) == 0 {
		return entity{}
	}
	return g.hasher.of(res)
}

func (g *grouper) len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

// apply folds a batch's transitions (in datapoint time order: a batch may
// hold many points of each series, metric after metric) and its entities'
// clocks into the groups, and writes the events that became due into b.
func (g *grouper) apply(b *batch) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := b.now().UnixNano()
	slices.SortStableFunc(b.trans, func(x, y transition) int { return cmp.Compare(x.ts, y.ts) })
	for i := range b.trans {
		if tr := &b.trans[i]; tr.start {
			b.evicted += g.join(tr, now, &b.output, &b.c.keys)
		} else if !g.leave(tr) {
			b.recordFrom(tr.rm, tr.sm, eventEnded, tr.m, tr.p)
		}
	}
	for _, c := range b.clocks {
		for _, grp := range g.entities[c.key] {
			grp.clock = max(grp.clock, c.ts)
		}
	}
	g.flush(&b.output, &b.c.keys, now, false)
}

// flushWall writes the events due by the collector's clock (with all,
// every pending started event).
func (g *grouper) flushWall(o *output, k *keys, all bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.flush(o, k, o.now().UnixNano(), all)
}

// join adds a started incident to its entity's group, making one if none
// is within the window. It returns how many groups it evicted.
func (g *grouper) join(tr *transition, now int64, o *output, k *keys) (evicted int64) {
	if g.members[tr.id] != nil {
		return 0 // a start seen twice (only possible with accept_remote_verdicts)
	}
	var grp *group
	list := g.entities[tr.entity.key]
	for i := len(list) - 1; i >= 0; i-- {
		if d := tr.ts - list[i].first; d <= g.window && d >= -g.window {
			grp = list[i]
			break
		}
	}
	if grp == nil {
		if g.n >= g.maxGroups {
			g.evict(g.oldest, o, k)
			evicted++
		}
		grp = &group{id: tr.id, entity: tr.entity.key, attrs: pcommon.NewMap(), first: tr.ts, clock: tr.ts, seen: now}
		g.hasher.attrs(tr.rm.Resource().Attributes(), grp.attrs)
		g.link(grp)
		g.entities[grp.entity] = append(g.entities[grp.entity], grp)
		g.pending = append(g.pending, grp)
	}
	for g.tracked >= g.maxTracked && g.oldest != grp {
		g.evict(g.oldest, o, k)
		evicted++
	}
	grp.count++
	grp.first = min(grp.first, tr.ts)
	grp.clock = max(grp.clock, tr.ts)
	grp.top = max(grp.top, tr.score)
	grp.list(tr, k.Prefix)
	if g.tracked < g.maxTracked {
		g.members[tr.id] = grp
		grp.ids = append(grp.ids, tr.id)
		g.tracked++
		grp.open++
	}
	return evicted
}

// leave marks a member's incident ended. It reports false for an incident
// that is in no group: one that started before the connector did, or whose
// group was evicted; its end is reported per series.
func (g *grouper) leave(tr *transition) bool {
	grp := g.members[tr.id]
	if grp == nil {
		return false
	}
	delete(g.members, tr.id)
	grp.open--
	grp.last = max(grp.last, tr.ts)
	grp.clock = max(grp.clock, tr.ts)
	grp.peak = max(grp.peak, tr.peak)
	if grp.open == 0 {
		g.closing = append(g.closing, grp)
	}
	return true
}

// flush sends the started events that are due, and the ended events of
// groups whose members all ended.
func (g *grouper) flush(o *output, k *keys, now int64, all bool) {
	var started []*group
	kept := g.pending[:0]
	for _, grp := range g.pending {
		if all || grp.clock-grp.first > g.window || now-grp.seen >= g.window {
			g.sendStarted(o, k, grp)
			started = append(started, grp)
		} else {
			kept = append(kept, grp)
		}
	}
	clear(g.pending[len(kept):])
	g.pending = kept
	for _, grp := range append(g.closing, started...) {
		if grp.out && !grp.gone && grp.open == 0 {
			g.sendEnded(o, k, grp)
			g.remove(grp)
		}
	}
	clear(g.closing)
	g.closing = g.closing[:0]
}

// evict drops grp, sending its started event first if it was not sent.
func (g *grouper) evict(grp *group, o *output, k *keys) {
	if !grp.out {
		g.sendStarted(o, k, grp)
	}
	g.remove(grp)
}

func (g *grouper) link(grp *group) {
	grp.prev = g.newest
	if g.newest != nil {
		g.newest.next = grp
	} else {
		g.oldest = grp
	}
	g.newest = grp
	g.n++
}

func (g *grouper) remove(grp *group) {
	grp.gone = true
	if grp.prev != nil {
		grp.prev.next = grp.next
	} else {
		g.oldest = grp.next
	}
	if grp.next != nil {
		grp.next.prev = grp.prev
	} else {
		g.newest = grp.prev
	}
	grp.prev, grp.next = nil, nil
	g.n--
	list := slices.DeleteFunc(g.entities[grp.entity], func(x *group) bool { return x == grp })
	if len(list) == 0 {
		delete(g.entities, grp.entity)
	} else {
		g.entities[grp.entity] = list
	}
	for _, id := range grp.ids {
		if g.members[id] == grp {
			delete(g.members, id)
		}
	}
	g.tracked -= len(grp.ids)
	g.pending = slices.DeleteFunc(g.pending, func(x *group) bool { return x == grp })
}

// list keeps the member among the maxListed highest scores.
func (grp *group) list(tr *transition, prefix string) {
	if len(grp.listed) == maxListed && tr.score <= grp.listed[maxListed-1].score {
		return
	}
	m := member{metric: tr.m.Name(), attrs: pcommon.NewMap(), score: tr.score, id: tr.id}
	m.attrs.EnsureCapacity(tr.p.attrs.Len())
	for key, v := range tr.p.attrs.All() {
		if !strings.HasPrefix(key, prefix) {
			v.CopyTo(m.attrs.PutEmpty(key))
		}
	}
	i, _ := slices.BinarySearchFunc(grp.listed, tr.score, func(x member, s float64) int {
		// Descending; a new member goes after the equal ones.
		if x.score >= s {
			return -1
		}
		return 1
	})
	grp.listed = slices.Insert(grp.listed, i, m)
	if len(grp.listed) > maxListed {
		grp.listed = grp.listed[:maxListed]
	}
}

// entityRecord starts a record in a ResourceLogs of its own whose resource
// is the entity.
func entityRecord(o *output, grp *group, kind eventKind, ts int64) plog.LogRecord {
	o.ensure()
	rl := o.logs.ResourceLogs().AppendEmpty()
	grp.attrs.CopyTo(rl.Resource().Attributes())
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName(metadata.ScopeName)
	return o.newRecord(sl, kind, pcommon.Timestamp(ts))
}

func (g *grouper) sendStarted(o *output, k *keys, grp *group) {
	grp.out = true
	lr := entityRecord(o, grp, eventStarted, grp.first)
	lr.Body().SetStr(groupStartedBody(grp, k.Prefix))
	attrs := lr.Attributes()
	attrs.PutStr(k.IncidentID, verdict.FormatID(grp.id))
	attrs.PutInt(k.seriesCount, int64(grp.count))
	attrs.PutDouble(k.Score, grp.top)
	series := attrs.PutEmptySlice(k.series)
	series.EnsureCapacity(len(grp.listed))
	for _, m := range grp.listed {
		s := series.AppendEmpty().SetEmptyMap()
		s.PutStr(metricNameKey, m.metric)
		m.attrs.CopyTo(s.PutEmptyMap("attributes"))
		s.PutDouble(k.Score, m.score)
		s.PutStr(k.IncidentID, verdict.FormatID(m.id))
	}
	attrs.PutBool(k.seriesTruncated, grp.count > len(grp.listed))
}

func (g *grouper) sendEnded(o *output, k *keys, grp *group) {
	end := max(grp.last, grp.first)
	lr := entityRecord(o, grp, eventEnded, end)
	peak := max(grp.peak, grp.top)
	seconds := float64(end-grp.first) / 1e9
	lr.Body().SetStr(groupEndedBody(grp, seconds, peak))
	attrs := lr.Attributes()
	attrs.PutStr(k.IncidentID, verdict.FormatID(grp.id))
	attrs.PutInt(k.seriesCount, int64(grp.count))
	attrs.PutDouble(k.IncidentDuration, seconds)
	attrs.PutDouble(k.IncidentPeak, peak)
}

// groupStartedBody:
//
//	host.name=web-1: 8 series anomalous (top score 0.93): system.cpu.utilization{cpu=cpu0} 0.93, ... and 5 more
func groupStartedBody(grp *group, prefix string) string {
	var sb strings.Builder
	writeEntity(&sb, grp.attrs)
	sb.WriteString(": ")
	sb.WriteString(strconv.Itoa(grp.count))
	if grp.count == 1 {
		sb.WriteString(" series anomalous")
	} else {
		sb.WriteString(" series anomalous together")
	}
	sb.WriteString(" (top score ")
	sb.WriteString(formatScore(grp.top))
	sb.WriteString("): ")
	n := min(len(grp.listed), bodyListed)
	for i, m := range grp.listed[:n] {
		if i > 0 {
			sb.WriteString(", ")
		}
		writeSeries(&sb, m.metric, m.attrs, prefix)
		sb.WriteByte(' ')
		sb.WriteString(formatScore(m.score))
	}
	if more := grp.count - n; more > 0 {
		sb.WriteString(" and ")
		sb.WriteString(strconv.Itoa(more))
		sb.WriteString(" more")
	}
	return sb.String()
}

// groupEndedBody:
//
//	host.name=web-1: 8 series back to normal after 5m0s (peak score 0.93)
func groupEndedBody(grp *group, seconds, peak float64) string {
	var sb strings.Builder
	writeEntity(&sb, grp.attrs)
	sb.WriteString(": ")
	sb.WriteString(strconv.Itoa(grp.count))
	sb.WriteString(" series back to normal after ")
	sb.WriteString(formatSeconds(seconds))
	sb.WriteString(" (peak score ")
	sb.WriteString(formatScore(peak))
	sb.WriteByte(')')
	return sb.String()
}

// writeEntity writes k=v,... in the entity's attribute order.
func writeEntity(sb *strings.Builder, attrs pcommon.Map) {
	i := 0
	for k, v := range attrs.All() {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(k)
		sb.WriteByte('=')
		sb.WriteString(formatValue(v))
		i++
	}
}
