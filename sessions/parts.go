package sessions

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/apisessions/apisessions/sessions/record"
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
}

// dayOf returns the calendar day of t in the boundary zone and the instant that day ends.
func (r *partRules) dayOf(t time.Time) (string, time.Time) {
	lt := t.In(r.loc)
	y, m, d := lt.Date()
	return lt.Format(time.DateOnly), time.Date(y, m, d+1, 0, 0, 0, 0, r.loc)
}

// endReason says whether a request (or the sweeper's clock) at t ends the part, and why.
func (r *partRules) endReason(p *part, t time.Time) string {
	if !t.Before(p.dayEnd) {
		return record.EndDay
	}
	if r.idle > 0 && t.Sub(p.lastSeen) > r.idle {
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

// part is the live state of one session part. It is only touched under its shard's lock.
type part struct {
	session string
	name    string
	day     string
	seq     int
	dayEnd  time.Time

	// live is false for a part ended by idle_timeout: the entry stays, without its counters,
	// until its day ends, so that the next part of the same day is numbered ".N+1".
	live bool
	// ended is set before the table removes an entry itself, so the eviction hook (which
	// simplelru also calls on Remove and Purge) emits nothing for it.
	ended bool

	firstSeen, lastSeen time.Time
	requests            int
	key                 record.Key
	user, role          string
	userAt, roleAt      time.Time // request time of the user and role kept: the latest wins
	ips, userAgents     []string
	methods, statuses   map[string]int
	flows               [8]int // requests per flow, index as in flowNames
	malicious           int
	bytesIn, bytesOut   int64

	// dirty is true when the part changed since its last emitted record.
	dirty    bool
	lastEmit time.Time
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
}

func newPart(session string, h *hit, r *partRules, seq int) *part {
	day, end := r.dayOf(h.t)
	return &part{
		session:   session,
		name:      partName(day, seq),
		day:       day,
		seq:       seq,
		dayEnd:    end,
		live:      true,
		firstSeen: h.t,
		lastSeen:  h.t,
		key:       h.key,
		methods:   make(map[string]int, 2),
		statuses:  make(map[string]int, 2),
	}
}

// nextSeq numbers a part that follows prev (a part just ended, or an idle tombstone).
func nextSeq(prev *part, day string) int {
	if prev != nil && prev.day == day {
		return prev.seq + 1
	}
	return 1
}

func (p *part) add(h *hit) {
	p.requests++
	if h.t.Before(p.firstSeen) {
		p.firstSeen = h.t
	}
	if h.t.After(p.lastSeen) {
		p.lastSeen = h.t
	}
	// The latest request (by its time, as streams finish out of order) names the user and
	// role. Parts outlive requests: clone what is kept so a part never pins a request's buffers.
	if h.user != "" && !h.t.Before(p.userAt) {
		if h.user != p.user {
			p.user = strings.Clone(h.user)
		}
		p.userAt = h.t
	}
	if h.role != "" && !h.t.Before(p.roleAt) {
		if h.role != p.role {
			p.role = strings.Clone(h.role)
		}
		p.roleAt = h.t
	}
	for m, i := h.flows, 0; m != 0; m, i = m>>1, i+1 {
		if m&1 != 0 {
			p.flows[i]++
		}
	}
	p.ips = addDistinct(p.ips, h.ip)
	p.userAgents = addDistinct(p.userAgents, h.userAgent)
	count(p.methods, h.method)
	count(p.statuses, statusText(h.status))
	if h.malicious {
		p.malicious++
	}
	p.bytesIn += h.bytesIn
	p.bytesOut += h.bytesOut
	p.dirty = true
}

func addDistinct(list []string, v string) []string {
	if v == "" || len(list) >= record.MaxDistinct {
		return list
	}
	for _, s := range list {
		if s == v {
			return list
		}
	}
	return append(list, strings.Clone(v))
}

func count(m map[string]int, k string) {
	if _, ok := m[k]; ok {
		m[k]++
		return
	}
	if len(m) >= record.MaxDistinct {
		m[otherBucket]++
		return
	}
	m[strings.Clone(k)] = 1
}

// statusTexts avoids formatting the status of every request.
var statusTexts = func() [600]string {
	var t [600]string
	for i := range t {
		t[i] = strconv.Itoa(i)
	}
	return t
}()

func statusText(s int) string {
	if s >= 0 && s < len(statusTexts) {
		return statusTexts[s]
	}
	return strconv.Itoa(s)
}

// sessionRecord builds a record of the part that shares nothing with it: records are values
// that sinks read after the part moved on.
func (p *part) sessionRecord(final bool, reason string) *record.Session {
	return &record.Session{
		Kind:       record.KindSession,
		Session:    p.session,
		Part:       p.name,
		FirstSeen:  record.At(p.firstSeen),
		LastSeen:   record.At(p.lastSeen),
		Requests:   p.requests,
		Key:        p.key,
		User:       p.user,
		Role:       p.role,
		IPs:        cloneSlice(p.ips),
		UserAgents: cloneSlice(p.userAgents),
		Methods:    cloneMap(p.methods),
		Statuses:   cloneMap(p.statuses),
		Flows:      p.flowCounts(),
		Malicious:  p.malicious,
		BytesIn:    p.bytesIn,
		BytesOut:   p.bytesOut,
		Final:      final,
		EndReason:  reason,
	}
}

// flowCounts is the flows map of a session record: flow -> requests, nil when none.
func (p *part) flowCounts() map[string]int {
	var m map[string]int
	for i, n := range p.flows {
		if n == 0 || i >= len(flowNames) {
			continue
		}
		if m == nil {
			m = make(map[string]int, 2)
		}
		m[flowNames[i]] = n
	}
	return m
}

func cloneSlice(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return append([]string(nil), s...)
}

func cloneMap(m map[string]int) map[string]int {
	if len(m) == 0 {
		return nil
	}
	c := make(map[string]int, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// toTombstone drops the counters of a part ended by idleness, keeping what numbers the next.
func (p *part) toTombstone() {
	*p = part{session: p.session, name: p.name, day: p.day, seq: p.seq, dayEnd: p.dayEnd}
}

// shard is one independently locked slice of the live-part table.
type shard struct {
	mu  sync.Mutex
	lru *simplelru.LRU[string, *part]
	// pending holds final records the eviction hook built while the lock was held; whoever
	// holds the lock hands them out after unlocking, so Emit never runs under a shard lock.
	pending []record.Record
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
		sh := &shard{}
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
		p = newPart(id, h, r, 1)
		sh.lru.Add(id, p)
	case !p.live:
		day, _ := r.dayOf(h.t)
		p = newPart(id, h, r, nextSeq(p, day))
		sh.lru.Add(id, p)
	default:
		if reason := r.endReason(p, h.t); reason != "" {
			p.ended = true
			out = append(out, p.sessionRecord(true, reason))
			day, _ := r.dayOf(h.t)
			p = newPart(id, h, r, nextSeq(p, day))
			// Add on a present key replaces the value without calling the eviction hook.
			sh.lru.Add(id, p)
		}
	}
	p.add(h)
	name := p.name
	out = append(out, sh.takePending()...)
	sh.mu.Unlock()
	return name, out
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
		prevDay, prevSeq = p.day, p.seq
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
			switch {
			case !p.live:
				if !now.Before(p.dayEnd) {
					p.ended = true
					drop = append(drop, p.session)
				}
			case !now.Before(p.dayEnd):
				p.ended = true
				out = append(out, p.sessionRecord(true, record.EndDay))
				drop = append(drop, p.session)
			case r.idle > 0 && now.Sub(p.lastSeen) > r.idle:
				out = append(out, p.sessionRecord(true, record.EndIdle))
				p.toTombstone()
			case p.dirty && now.Sub(p.lastEmit) >= every:
				out = append(out, p.sessionRecord(false, ""))
				p.dirty = false
				p.lastEmit = now
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
