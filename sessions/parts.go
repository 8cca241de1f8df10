package sessions

import (
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/risk"
)

// maxShards is the number of independently locked slices of the live-part table: enough that
// concurrent streams rarely wait on one another, few enough that a sweep stays cheap.
const maxShards = 32

// otherBucket collects method and status counts once a part has seen record.MaxDistinct
// different values, so a client cycling through made-up methods cannot grow a part.
const otherBucket = "other"

// partRules are the splitting rules of one configuration snapshot.
type partRules struct {
	loc  *time.Location
	idle time.Duration // 0 = parts split by day only
	risk *risk.Model
	// today is the day dayOf named last, shared by the rules' copies (nil: none kept): most
	// requests fall on it, and naming a day takes a time zone lookup and a format.
	today *atomic.Pointer[calendarDay]
}

// calendarDay is a day in the boundary zone: its name and the instants it starts and ends.
type calendarDay struct {
	name       string
	start, end time.Time
}

// dayOf returns the calendar day of t in the boundary zone and the instant that day ends.
func (r *partRules) dayOf(t time.Time) (string, time.Time) {
	if r.today != nil {
		if d := r.today.Load(); d != nil && !t.Before(d.start) && t.Before(d.end) {
			return d.name, d.end
		}
	}
	lt := t.In(r.loc)
	y, m, d := lt.Date()
	day := &calendarDay{name: lt.Format(time.DateOnly), start: time.Date(y, m, d, 0, 0, 0, 0, r.loc),
		end: time.Date(y, m, d+1, 0, 0, 0, 0, r.loc)}
	if r.today != nil && midnight(day.start, y, m, d) && midnight(day.end, y, m, d+1) {
		// Kept only when both ends are midnights of their days (a zone may skip a midnight),
		// so that every instant in between is of this day.
		r.today.Store(day)
	}
	return day.name, day.end
}

// midnight reports whether t is 00:00 of day y-m-d (d may overflow, as in time.Date) in t's zone.
func midnight(t time.Time, y int, m time.Month, d int) bool {
	want := time.Date(y, m, d, 12, 0, 0, 0, time.UTC)
	ty, tm, td := t.Date()
	h, mi, sec := t.Clock()
	return ty == want.Year() && tm == want.Month() && td == want.Day() && h == 0 && mi == 0 && sec == 0 && t.Nanosecond() == 0
}

// endReason says whether a request (or the sweeper's clock) at t ends the part, and why.
func (r *partRules) endReason(p *part, t time.Time) string {
	return r.endAt(p.dayEnd, p.lastSeen, t)
}

// endAt is endReason for a part whose day ends at dayEnd (Unix seconds) and whose latest
// request was lastSeen nanoseconds from then: the one statement of the rule in Go (the
// shared state's script states it in Lua).
func (r *partRules) endAt(dayEnd, lastSeen int64, t time.Time) string {
	if t.Unix() >= dayEnd {
		return record.EndDay
	}
	if r.idle > 0 && offsetFrom(dayEnd, t)-lastSeen > int64(r.idle) {
		return record.EndIdle
	}
	return ""
}

// partName is the day, with ".N" for the N-th part of that day.
func partName(day string, seq int) string {
	if seq <= 1 {
		return day
	}
	return day + "." + strconv.Itoa(seq)
}

// noEmit is the lastEmit of a part that has had no record yet.
const noEmit = math.MinInt64

// part is the live state of one session part. It is only touched under its shard's lock.
// With a million parts in memory every byte counts: strings that many parts share come from
// the shard (day, key, user agents, roles), counters sit in a tally, and times are offsets.
type part struct {
	session string
	// name is the day, shared by the shard's parts of that day, or day + ".N".
	name string
	// key is shared by the shard's parts grouped by the same key.
	key        *record.Key
	user, role string

	// seen holds the distinct client addresses (the first nIPs) and then the distinct user
	// agents, each in the order met and at most record.MaxDistinct of each.
	seen   []string
	counts tally

	// dayEnd is the instant the part's day ends, in Unix seconds. The other times are
	// nanoseconds from that instant (negative: before it); they span ±292 years around the
	// day, beyond which they saturate.
	dayEnd              int64
	firstSeen, lastSeen int64
	userAt, roleAt      int64 // request time of the user and role kept: the latest wins
	lastEmit            int64 // noEmit until the part's first record

	requests, malicious int64
	bytesIn, bytesOut   int64

	seq uint32
	// linked counts the values linked into the part (stitching).
	linked uint32
	nIPs   uint8
	// live is false for a part ended by idle_timeout: the entry stays, without its counters,
	// until its day ends, so that the next part of the same day is numbered ".N+1".
	live bool
	// ended is set before the table removes an entry itself, so the eviction hook (which
	// simplelru also calls on Remove and Purge) emits nothing for it.
	ended bool
	// dirty is true when the part changed since its last emitted record.
	dirty bool
	// shared is true when the shared state named the part at its latest request, so that
	// the shared state's latest request is at least the part's (joinHint).
	shared bool
	// risk is the part's risk sums, nil until a request shows a signal (most parts never do).
	risk *partRisk
}

// partRisk is a part's risk sums and the model that scaled them.
type partRisk struct {
	sums  risk.Sums
	model *risk.Model
}

// score is the part's risk score and reasons at t.
func (p *part) score(t time.Time) (int, []record.RiskReason) {
	if p.risk == nil {
		return 0, nil
	}
	return p.risk.model.Score(&p.risk.sums, risk.Ref(p.name), t)
}

// offset is t as the part keeps times: nanoseconds from the end of its day.
func (p *part) offset(t time.Time) int64 { return offsetFrom(p.dayEnd, t) }

// offsetFrom is t in nanoseconds from the Unix second dayEnd.
func offsetFrom(dayEnd int64, t time.Time) int64 { return int64(t.Sub(time.Unix(dayEnd, 0))) }

// at is the record time of an offset.
func (p *part) at(off int64) record.Time { return record.At(time.Unix(p.dayEnd, off).UTC()) }

// day is the day the part began, without its sequence number.
func (p *part) day() string {
	d, _, _ := strings.Cut(p.name, ".")
	return d
}

// hit is what one request contributes to its part.
type hit struct {
	t         time.Time
	key       record.Key
	user      string
	role      string
	ip        string
	userAgent string
	method    string
	status    int
	bytesIn   int64
	bytesOut  int64
	flows     flowMask
	malicious bool
	linked    int
	// points are the request's risk points, model the model that weighed them.
	points risk.Points
	model  *risk.Model
}

// newPart opens part seq of the day of h.t; sh shares its day and key.
func (sh *shard) newPart(session string, h *hit, r *partRules, seq int) *part {
	day, end := r.dayOf(h.t)
	return sh.openPart(session, h, day, end.Unix(), seq)
}

// openPart opens part seq of day, which ends at dayEnd (Unix seconds), with h.
func (sh *shard) openPart(session string, h *hit, day string, dayEnd int64, seq int) *part {
	if day != sh.day {
		sh.day = day
	}
	p := &part{
		session:  session,
		name:     partName(sh.day, seq),
		key:      shareKey(sh.keys, h.key),
		dayEnd:   dayEnd,
		lastEmit: noEmit,
		seq:      uint32(seq),
		live:     true,
	}
	p.firstSeen = p.offset(h.t)
	p.lastSeen = p.firstSeen
	return p
}

// nextSeq numbers a part that follows prev (a part just ended, or an idle tombstone).
func nextSeq(prev *part, day string) int {
	if prev != nil && prev.day() == day {
		return int(prev.seq) + 1
	}
	return 1
}

// add counts h in the part; in shares the user agents and roles.
func (p *part) add(h *hit, in *interner) {
	p.requests++
	t := p.offset(h.t)
	p.firstSeen = min(p.firstSeen, t)
	p.lastSeen = max(p.lastSeen, t)
	// The latest request (by its time, as streams finish out of order) names the user and
	// role. Parts outlive requests: copy what is kept so a part never pins a request's buffers.
	if h.user != "" && (p.user == "" || t >= p.userAt) {
		if h.user != p.user {
			p.user = strings.Clone(h.user)
		}
		p.userAt = t
	}
	if h.role != "" && (p.role == "" || t >= p.roleAt) {
		if h.role != p.role {
			p.role = in.intern(h.role)
		}
		p.roleAt = t
	}
	p.counts.flows(h.flows)
	p.addIP(h.ip)
	p.addUserAgent(h.userAgent, in)
	p.counts.method(h.method)
	p.counts.status(h.status)
	if h.malicious {
		p.malicious++
	}
	p.bytesIn += h.bytesIn
	p.bytesOut += h.bytesOut
	p.linked += uint32(max(0, h.linked))
	if h.points != (risk.Points{}) && h.model != nil {
		if p.risk == nil {
			p.risk = &partRisk{model: h.model}
		}
		p.risk.model.Add(&p.risk.sums, risk.Ref(p.name), h.t, &h.points)
	}
	p.dirty = true
}

func (p *part) addIP(ip string) {
	ips := p.seen[:p.nIPs]
	if ip == "" || len(ips) >= record.MaxDistinct || slices.Contains(ips, ip) {
		return
	}
	p.seen = slices.Insert(p.growSeen(), int(p.nIPs), strings.Clone(ip))
	p.nIPs++
}

func (p *part) addUserAgent(ua string, in *interner) {
	uas := p.seen[p.nIPs:]
	if ua == "" || len(uas) >= record.MaxDistinct || slices.Contains(uas, ua) {
		return
	}
	p.seen = append(p.growSeen(), in.intern(ua))
}

// growSeen makes room for one more entry, two at first: an address and a user agent.
func (p *part) growSeen() []string {
	if p.seen == nil {
		return make([]string, 0, 2)
	}
	return p.seen
}

// sessionRecord builds a record of the part that shares nothing mutable with it: records are
// values that sinks read after the part moved on.
func (p *part) sessionRecord(final bool, reason string) *record.Session {
	score, reasons := p.score(p.at(p.lastSeen).Time)
	return &record.Session{
		Risk:        score,
		RiskReasons: reasons,
		Kind:        record.KindSession,
		Session:     p.session,
		Part:        p.name,
		FirstSeen:   p.at(p.firstSeen),
		LastSeen:    p.at(p.lastSeen),
		Requests:    int(p.requests),
		Key:         *p.key,
		User:        p.user,
		Role:        p.role,
		IPs:         cloneSlice(p.seen[:p.nIPs]),
		UserAgents:  cloneSlice(p.seen[p.nIPs:]),
		Methods:     p.counts.counts(kindMethod),
		Statuses:    p.counts.counts(kindStatus),
		Flows:       p.counts.counts(kindFlow),
		Malicious:   int(p.malicious),
		BytesIn:     p.bytesIn,
		BytesOut:    p.bytesOut,
		Linked:      int(p.linked),
		Final:       final,
		EndReason:   reason,
	}
}

func cloneSlice(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return append([]string(nil), s...)
}

// toTombstone drops the counters of a part ended by idleness, keeping what numbers the next.
func (p *part) toTombstone() {
	*p = part{session: p.session, name: p.name, key: p.key, dayEnd: p.dayEnd, seq: p.seq, lastEmit: noEmit}
}

// shard is one independently locked slice of the live-part table.
type shard struct {
	mu  sync.Mutex
	lru *simplelru.LRU[string, *part]
	// pending holds final records the eviction hook built while the lock was held; whoever
	// holds the lock hands them out after unlocking, so Emit never runs under a shard lock.
	pending []record.Record

	// What the shard's parts share rather than copy: the day of the newest part, the
	// grouping keys, and user agents and roles.
	day  string
	keys map[record.Key]*record.Key
	in   interner
}

// table is the authoritative set of live parts, keyed by session id.
type table struct {
	shards []*shard
}

// newTable splits capacity over at most maxShards shards, each with at least one slot.
func newTable(capacity int) (*table, error) {
	n := min(maxShards, max(1, capacity))
	t := &table{shards: make([]*shard, n)}
	for i := range t.shards {
		sh := &shard{keys: make(map[record.Key]*record.Key), in: interner{seed: maphash.MakeSeed()}}
		l, err := simplelru.NewLRU(shardCap(capacity, n, i), sh.onEvict)
		if err != nil {
			return nil, fmt.Errorf("create live-part table: %w", err)
		}
		sh.lru = l
		t.shards[i] = sh
	}
	return t, nil
}

func shardCap(capacity, n, i int) int {
	c := capacity / n
	if i < capacity%n {
		c++
	}
	return max(1, c)
}

// onEvict runs under the shard lock when the LRU drops an entry to make room.
func (sh *shard) onEvict(_ string, p *part) {
	if p.live && !p.ended {
		p.ended = true
		sh.pending = append(sh.pending, p.sessionRecord(true, record.EndEvicted))
	}
}

// resize applies a new capacity; parts beyond it are ended as evicted.
func (t *table) resize(capacity int, emit func(record.Record)) {
	n := len(t.shards)
	for i, sh := range t.shards {
		sh.mu.Lock()
		sh.lru.Resize(shardCap(capacity, n, i))
		out := sh.takePending()
		sh.mu.Unlock()
		emitAll(emit, out)
	}
}

func (sh *shard) takePending() []record.Record {
	out := sh.pending
	sh.pending = nil
	return out
}

func emitAll(emit func(record.Record), recs []record.Record) {
	for _, r := range recs {
		emit(r)
	}
}

// shardOf spreads session ids ("s_" + hex of an HMAC, uniformly distributed) over the shards.
func (t *table) shardOf(id string) *shard {
	var h uint32
	for i := 2; i < len(id) && i < 10; i++ {
		h = h*31 + uint32(id[i])
	}
	return t.shards[h%uint32(len(t.shards))]
}

// observe adds one request to the part of session id, ending the current part first when the
// request falls on a later day or after an idle gap. It returns the part's name and the
// records to emit (final records of ended or evicted parts) once no lock is held.
func (t *table) observe(id string, h *hit, r *partRules, out []record.Record) (string, []record.Record) {
	sh := t.shardOf(id)
	sh.mu.Lock()
	p, ok := sh.lru.Get(id)
	switch {
	case !ok:
		p = sh.newPart(id, h, r, 1)
		sh.lru.Add(id, p)
	case !p.live:
		day, _ := r.dayOf(h.t)
		p = sh.newPart(id, h, r, nextSeq(p, day))
		sh.lru.Add(id, p)
	default:
		if reason := r.endReason(p, h.t); reason != "" {
			p.ended = true
			out = append(out, p.sessionRecord(true, reason))
			day, _ := r.dayOf(h.t)
			p = sh.newPart(id, h, r, nextSeq(p, day))
			// Add on a present key replaces the value without calling the eviction hook.
			sh.lru.Add(id, p)
		}
	}
	p.add(h, &sh.in)
	p.shared = false // decided here: the shared state, if any, did not see this request
	name := p.name
	out = append(out, sh.takePending()...)
	sh.mu.Unlock()
	return name, out
}

// observeShared is observe with the part the shared state named: the local live part when
// it has that name, else a local part of that name, which ends the local live part first
// (its final record says day when the shared part is of another day, else idle).
func (t *table) observeShared(id string, h *hit, st *PartState, out []record.Record) (string, []record.Record) {
	sh := t.shardOf(id)
	name := st.name()
	sh.mu.Lock()
	p, ok := sh.lru.Get(id)
	if !ok || !p.live || p.name != name {
		if ok && p.live {
			p.ended = true
			reason := record.EndIdle
			if p.day() != st.Day {
				reason = record.EndDay
			}
			out = append(out, p.sessionRecord(true, reason))
		}
		p = sh.openPart(id, h, st.Day, st.DayEnd, st.Seq)
		// Add on a present key replaces the value without calling the eviction hook.
		sh.lru.Add(id, p)
	}
	p.add(h, &sh.in)
	p.shared = true
	out = append(out, sh.takePending()...)
	sh.mu.Unlock()
	return name, out
}

// live reports whether session id has a live part that a request at tm would join.
func (t *table) live(id string, tm time.Time, r *partRules) bool {
	sh := t.shardOf(id)
	sh.mu.Lock()
	p, ok := sh.lru.Peek(id)
	live := ok && p.live && r.endReason(p, tm) == ""
	sh.mu.Unlock()
	return live
}

// joinHint is the number of the engine's live part of session id when a request at tm joins
// it by the rule and the shared state named it at its latest request; else 0.
func (t *table) joinHint(id string, tm time.Time, r *partRules) int {
	sh := t.shardOf(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	p, ok := sh.lru.Peek(id)
	if !ok || !p.live || !p.shared || r.endReason(p, tm) != "" {
		return 0
	}
	if day, _ := r.dayOf(tm); day != p.day() {
		return 0
	}
	return int(p.seq)
}

// risk is the risk score at tm of the live part of session id that a request at tm would
// join; 0 when there is none.
func (t *table) risk(id string, tm time.Time, r *partRules) int {
	sh := t.shardOf(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if p, ok := sh.lru.Peek(id); ok && p.live && p.risk != nil && r.endReason(p, tm) == "" {
		at := p.at(p.lastSeen).Time
		if tm.After(at) {
			at = tm
		}
		score, _ := p.risk.model.Score(&p.risk.sums, risk.Ref(p.name), at)
		return score
	}
	return 0
}

// peekLive names the live part a request at time tm would join, when there is one.
func (t *table) peekLive(id string, tm time.Time, r *partRules) (string, bool) {
	sh := t.shardOf(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if p, ok := sh.lru.Peek(id); ok && p.live && r.endReason(p, tm) == "" {
		return p.name, true
	}
	return "", false
}

// peek names the part a request at time tm would join, changing nothing.
func (t *table) peek(id string, tm time.Time, r *partRules) string {
	sh := t.shardOf(id)
	sh.mu.Lock()
	p, ok := sh.lru.Peek(id)
	var cur, prevDay string
	var prevSeq int
	if ok {
		if p.live && r.endReason(p, tm) == "" {
			cur = p.name
		}
		prevDay, prevSeq = p.day(), int(p.seq)
	}
	sh.mu.Unlock()
	if cur != "" {
		return cur
	}
	day, _ := r.dayOf(tm)
	seq := 1
	if ok && prevDay == day {
		seq = prevSeq + 1
	}
	return partName(day, seq)
}

// sweep ends parts whose day has ended or whose idle time passed, drops idle tombstones whose
// day has ended, and snapshots every changed part whose last record is at least every old.
func (t *table) sweep(now time.Time, r *partRules, every time.Duration, emit func(record.Record)) {
	var out []record.Record
	var drop []string
	for _, sh := range t.shards {
		sh.mu.Lock()
		for _, p := range sh.lru.Values() {
			switch reason := r.endReason(p, now); {
			case !p.live:
				if reason == record.EndDay {
					p.ended = true
					drop = append(drop, p.session)
				}
			case reason == record.EndDay:
				p.ended = true
				out = append(out, p.sessionRecord(true, record.EndDay))
				drop = append(drop, p.session)
			case reason == record.EndIdle:
				out = append(out, p.sessionRecord(true, record.EndIdle))
				p.toTombstone()
			case p.dirty && (p.lastEmit == noEmit || p.offset(now)-p.lastEmit >= int64(every)):
				out = append(out, p.sessionRecord(false, ""))
				p.dirty = false
				p.lastEmit = p.offset(now)
			}
		}
		for _, id := range drop {
			sh.lru.Remove(id)
		}
		drop = drop[:0]
		out = append(out, sh.takePending()...)
		sh.mu.Unlock()
		emitAll(emit, out)
		out = out[:0]
	}
}

// closeAll ends every live part with reason and empties the table.
func (t *table) closeAll(reason string, emit func(record.Record)) {
	for _, sh := range t.shards {
		sh.mu.Lock()
		var out []record.Record
		for _, p := range sh.lru.Values() {
			if p.live && !p.ended {
				out = append(out, p.sessionRecord(true, reason))
			}
			p.ended = true
		}
		sh.lru.Purge()
		out = append(out, sh.takePending()...)
		sh.mu.Unlock()
		emitAll(emit, out)
	}
}

// len counts live parts (tombstones excluded).
func (t *table) len() int {
	n := 0
	for _, sh := range t.shards {
		sh.mu.Lock()
		for _, p := range sh.lru.Values() {
			if p.live {
				n++
			}
		}
		sh.mu.Unlock()
	}
	return n
}
