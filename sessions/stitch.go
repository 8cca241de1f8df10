package sessions

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/apisessions/apisessions/sessions/extract"
	"github.com/apisessions/apisessions/sessions/record"
)

// Stitching follows one client across the values of its identifier. A link says "the session
// of this value continues root": it is made only when a response issues a value to a request
// whose own session is known, never from what a request alone claims. Links live in a bounded
// table of 32 LRU shards; each expires with the part it was made in (the end of the part's day,
// or an idle gap longer than sessions.idle_timeout). A chain resolves at link time: a value
// linked to a session that itself continues a root is linked to that root, so a lookup is one
// step.

// Link kinds, as request records name them (continued_from.kind).
const (
	StitchRotation = "rotation"
	StitchLogin    = "login"
)

// linkKind is what an entry of the link table says.
type linkKind uint8

const (
	// linkIssued marks a value a response issued that continues no other session (its root is
	// its own session): a first-party cookie seen this way becomes an identifier candidate.
	linkIssued linkKind = iota + 1
	linkRotation
	linkLogin
	// linkAmbiguous marks a value issued to two different sessions (a constant value such as
	// a language or a consent flag): it identifies no one and is never followed.
	linkAmbiguous
	// linkClaim marks a fallback session whose requests a login already joined: the client
	// behind an address and user agent is known only until its first login, since several
	// clients may share them.
	linkClaim
)

func (k linkKind) name() string {
	switch k {
	case linkRotation:
		return StitchRotation
	case linkLogin:
		return StitchLogin
	}
	return ""
}

// link is one entry of the link table.
type link struct {
	root string
	kind linkKind
	// dayEnd is the Unix second at which the part the link was made in ends by day; lastUse is
	// the latest request time (Unix nanoseconds) that made or followed the link, for the idle
	// rule.
	dayEnd  int64
	lastUse int64
}

// linkShards spreads the table over this many locks.
const linkShards = 32

// linkTable is the bounded table of links, keyed by the session id of the linked value (or,
// for claims, by a NUL byte and the fallback session id, which no session id starts with).
type linkTable struct {
	shards [linkShards]linkShard
	// Counters for Stats: links made by kind, entries evicted by the bound, links refused
	// (the value already had a session of its own, or was issued to another session).
	rotations, logins, evictions, refused atomic.Int64
	// failOpen counts requests stitched here because the shared links did not answer.
	failOpen atomic.Int64
	// next is the shard sweepShard sweeps next.
	next atomic.Uint32
}

type linkShard struct {
	mu  sync.Mutex
	lru *simplelru.LRU[string, link]
	// removing is set while the shard removes an entry itself, so that the eviction hook
	// (which simplelru also calls on Remove) counts only the bound's evictions.
	removing bool
}

func newLinkTable(capacity int) (*linkTable, error) {
	t := &linkTable{}
	per := max(1, capacity/linkShards)
	for i := range t.shards {
		sh := &t.shards[i]
		l, err := simplelru.NewLRU(per, func(string, link) {
			if !sh.removing {
				t.evictions.Add(1)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("create link table: %w", err)
		}
		sh.lru = l
	}
	return t, nil
}

// remove drops key without counting an eviction; the shard's lock is held.
func (sh *linkShard) remove(key string) {
	sh.removing = true
	sh.lru.Remove(key)
	sh.removing = false
}

func (t *linkTable) shardOf(key string) *linkShard {
	var h uint32
	for i := 0; i < len(key) && i < 12; i++ {
		h = h*31 + uint32(key[i])
	}
	return &t.shards[h%linkShards]
}

// expired reports whether l ended with its part by time tm.
func (l *link) expired(tm time.Time, idle time.Duration) bool {
	if tm.Unix() >= l.dayEnd {
		return true
	}
	return idle > 0 && tm.UnixNano()-l.lastUse > int64(idle)
}

// get returns the live entry for key at tm and refreshes its idle clock; an expired entry is
// removed (not counted as an eviction).
func (t *linkTable) get(key string, tm time.Time, idle time.Duration) (link, bool) {
	return t.lookup(key, tm, idle, true)
}

// lookup is get; without touch it changes nothing (Peek).
func (t *linkTable) lookup(key string, tm time.Time, idle time.Duration, touch bool) (link, bool) {
	sh := t.shardOf(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	l, ok := sh.lru.Peek(key)
	if !ok {
		return link{}, false
	}
	if l.expired(tm, idle) {
		if touch {
			sh.remove(key)
		}
		return link{}, false
	}
	if n := tm.UnixNano(); touch && n > l.lastUse {
		l.lastUse = n
		sh.lru.Add(key, l)
	}
	return l, true
}

// put adds an entry for key unless a live one is there: the first link of a value wins. When
// one is there with another root, the value becomes ambiguous (it was issued to two sessions)
// and put returns false; it also returns false when the entry was already present.
func (t *linkTable) put(key string, l link, tm time.Time, idle time.Duration) bool {
	sh := t.shardOf(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old, ok := sh.lru.Peek(key); ok && !old.expired(tm, idle) {
		if old.root != l.root && old.kind != linkAmbiguous && old.kind != linkClaim {
			old.kind = linkAmbiguous
			sh.lru.Add(key, old)
		}
		return false
	} else if ok {
		sh.remove(key)
	}
	sh.lru.Add(key, l)
	return true
}

// len is the number of entries held, expired ones not yet removed included.
func (t *linkTable) len() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n += sh.lru.Len()
		sh.mu.Unlock()
	}
	return n
}

// claimKey is the table key of the claim on a fallback session.
func claimKey(fallback string) string { return "\x00" + fallback }

// carried is the identifier a request carried, as the request side alone says.
type carried struct {
	session string // the value's own session id
	key     record.Key
	// anonymous is true for the fallback and for first-party cookies known only because a
	// response issued them: a login from such a request is a login link.
	anonymous bool
	fallback  bool
	name      string // the identifier's name (cookie or parameter), for rotation
}

// issuedValue is one identifier a response issued.
type issuedValue struct {
	session string
	key     record.Key
	name    string
	// candidate is true for a first-party cookie that is no built-in identifier: it never
	// decides its own request, it only becomes known.
	candidate bool
}

// maxIssued bounds the values one response may issue that the engine follows.
const maxIssued = 8

// stitching is what the stitch stage decided for one exchange.
type stitching struct {
	session string
	key     record.Key
	// from and kind are set when the request's value continues another session.
	from, kind string
	// linked counts the values this exchange's response linked into the session.
	linked int
}

// sweepShard drops the expired entries of one shard, a different one at each call, so that
// the whole table is swept every linkShards calls (seconds) without holding a lock long.
func (t *linkTable) sweepShard(now time.Time, idle time.Duration) {
	i := t.next.Add(1) % linkShards
	sh := &t.shards[i]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, k := range sh.lru.Keys() {
		if l, ok := sh.lru.Peek(k); ok && l.expired(now, idle) {
			sh.remove(k)
		}
	}
}

// follows reports whether a request carrying a value with this entry joins the entry's root.
func (l *link) follows() bool { return l.kind == linkRotation || l.kind == linkLogin }

// learned finds, among the request's first-party cookies that are no built-in identifier, the
// first whose value a response issued (an entry of the link table): a cookie a response set
// and the client sent back. Only requests with no other identifier look, and at most 16
// cookies are hashed.
func (e *Engine) learned(s *snapshot, v *extract.View, t time.Time, touch bool) (carried, bool) {
	var out carried
	if e.links == nil || !(s.stitchRotation || s.stitchLogin) {
		return out, false
	}
	found, n := false, 0
	v.EachCookie(func(name, val string) bool {
		if builtinCookie(name) || tracker(name) || !idLike(val) {
			return true
		}
		if n++; n > 16 {
			return false
		}
		sid := e.hash.sessionID(val)
		if l, ok := e.links.lookup(sid, t, s.rules.idle, touch); ok && l.kind != linkAmbiguous && l.kind != linkClaim {
			out = carried{session: sid, key: cookieKey(name).key, name: "cookie:" + name, anonymous: true}
			found = true
			return false
		}
		return true
	})
	return out, found
}

// carriedOf is what the request of an exchange carries: its first request-side grouping
// parameter, else a built-in identifier, else a first-party cookie a response issued, else the
// fallback of client c.
func (e *Engine) carriedOf(s *snapshot, v *extract.View, c *client, ps *params, t time.Time, touch bool) carried {
	if ps.reqGrouped {
		return carried{session: ps.reqSession, key: ps.reqKey, name: ps.reqIdent}
	}
	if s.builtin {
		if val, key, ok := groupBuiltin(v); ok {
			return carried{session: e.hash.sessionID(val), key: key, name: key.Name}
		}
		if car, ok := e.learned(s, v, t, touch); ok {
			return car
		}
	}
	join, key := s.fallback(c)
	return carried{session: e.hash.fallbackID(join), key: key, anonymous: true, fallback: true}
}

// stitch is the stitch stage: it decides the session of an exchange from the identifier its
// request carried (c, followed through its link) and the values its response issued, and
// links those values:
//
//   - a request that carried an identifier keeps its session, and the new values its
//     response issued are linked to it (rotation);
//   - a request that carried only an anonymous identifier (the fallback, or a first-party
//     cookie known from a response) keeps its session too, and the values are linked to it
//     (login), but a fallback session is joined by one login only: after it, the address and
//     user agent may be another client's;
//   - without a link, a response-issued value decides the session of a request that carried
//     no identifier of its own (or when a response-side grouping parameter comes first in
//     file order), so a login request belongs to the session it starts.
//
// A configured response-side parameter first in file order names the key of its request
// either way (the grouping rule); with a link, its value's session is the root it joined.
//
// A value is linked only when it has no live entry (the first link wins; a value issued to
// two sessions is marked ambiguous and never followed) and no live part of its own (it is
// not already some client's session). A request alone never links anything.
func (e *Engine) stitch(s *snapshot, c carried, issued []issuedValue, respFirst bool, t time.Time, dry bool) stitching {
	idle := s.rules.idle
	st := stitching{session: c.session, key: c.key}
	if e.links == nil || !(s.stitchRotation || s.stitchLogin) {
		return unlinked(c, issued, respFirst)
	}
	if !c.fallback {
		if l, ok := e.links.lookup(c.session, t, idle, !dry); ok && l.follows() && l.root != c.session {
			st.session, st.from, st.kind = l.root, c.session, l.kind.name()
		}
	}
	if len(issued) == 0 {
		return st
	}
	_, dayEnd := s.rules.dayOf(t)
	mk := func(root string, kind linkKind) link {
		return link{root: root, kind: kind, dayEnd: dayEnd.Unix(), lastUse: t.UnixNano()}
	}
	var freshBuf [maxIssued]issuedValue
	fresh := freshBuf[:0]
	for _, iv := range issued {
		if iv.session == c.session || iv.session == st.session {
			continue
		}
		if l, ok := e.links.lookup(iv.session, t, idle, !dry); ok {
			if l.root != st.session && !dry {
				// Issued before to another session: put marks it ambiguous.
				e.links.put(iv.session, mk(st.session, linkIssued), t, idle)
				e.links.refused.Add(1)
			}
			continue
		}
		if e.parts.live(iv.session, t, &s.rules) {
			if !dry {
				e.links.refused.Add(1)
			}
			continue
		}
		fresh = append(fresh, iv)
	}
	linkable := s.stitchRotation
	if c.anonymous {
		linkable = s.stitchLogin
	}
	claimed := false // the fallback session was joined by another login already
	if linkable && len(fresh) > 0 && c.fallback {
		if dry {
			_, claimed = e.links.lookup(claimKey(c.session), t, idle, false)
		} else {
			claimed = !e.links.put(claimKey(c.session), mk(c.session, linkClaim), t, idle)
		}
		linkable = !claimed
	}
	if linkable && len(fresh) > 0 {
		kind := linkRotation
		if c.anonymous {
			kind = linkLogin
		}
		if dry {
			st.linked = len(fresh)
			if respFirst {
				st.key = issued[0].key
			}
			return st
		}
		for _, iv := range fresh {
			if e.links.put(iv.session, mk(st.session, kind), t, idle) {
				st.linked++
			}
		}
		if kind == linkLogin {
			e.links.logins.Add(int64(st.linked))
		} else {
			e.links.rotations.Add(int64(st.linked))
		}
		if respFirst {
			// The response-side key decides, and its value now continues this session.
			st.key = issued[0].key
		}
		return st
	}
	for _, iv := range fresh {
		// A first-party cookie issued to a fallback session that a login already joined is
		// not learned: it may be any of the clients behind that address and user agent, whose
		// later requests then stay on the fallback rather than split from it.
		if !dry && !(iv.candidate && claimed) {
			e.links.put(iv.session, mk(iv.session, linkIssued), t, idle)
		}
	}
	var decide *issuedValue
	switch {
	case respFirst:
		decide = &issued[0]
	case c.anonymous:
		for i := range fresh {
			if !fresh[i].candidate {
				decide = &fresh[i]
				break
			}
		}
	}
	if decide != nil {
		st = stitching{session: decide.session, key: decide.key}
		if l, ok := e.links.lookup(decide.session, t, idle, !dry); ok && l.follows() && l.root != decide.session {
			st.session, st.from, st.kind = l.root, decide.session, l.kind.name()
		}
	}
	return st
}

// unlinked is stitch without links (both kinds off, or replicas sharing parts without shared
// links): what the exchange alone says, so that every replica decides alike. A response-issued value
// decides the session of a request that carried no identifier of its own, or when a
// response-side grouping parameter comes first in file order; nothing is linked.
func unlinked(c carried, issued []issuedValue, respFirst bool) stitching {
	st := stitching{session: c.session, key: c.key}
	for i := range issued {
		iv := &issued[i]
		if (respFirst && i == 0) || (c.anonymous && !respFirst && !iv.candidate) {
			if iv.session != c.session {
				return stitching{session: iv.session, key: iv.key}
			}
			return st
		}
	}
	return st
}

// stitchIn is what a part worker needs to stitch a request on the shared links.
type stitchIn struct {
	s         *snapshot
	car       carried
	issued    []issuedValue
	respFirst bool
}

// op is the shared links' form of in for a request at t.
func (in *stitchIn) op(t time.Time) LinkOp {
	_, dayEnd := in.s.rules.dayOf(t)
	op := LinkOp{Carried: in.car.session, Fallback: in.car.fallback, Anonymous: in.car.anonymous,
		RespFirst: in.respFirst, Rotation: in.s.stitchRotation, Login: in.s.stitchLogin,
		T: t, DayEnd: dayEnd.Unix(), Idle: in.s.rules.idle}
	op.Issued = make([]LinkIssued, len(in.issued))
	for i, iv := range in.issued {
		op.Issued[i] = LinkIssued{Session: iv.session, Candidate: iv.candidate}
	}
	return op
}

// result is the stitching an answered op says.
func (in *stitchIn) result(op *LinkOp) stitching {
	st := stitching{session: op.Session, key: in.car.key, from: op.From, kind: op.Kind, linked: op.Linked}
	if op.Decided > 0 && op.Decided <= len(in.issued) {
		st.key = in.issued[op.Decided-1].key
	}
	return st
}

// applyStitch gives rec and its hit h the session st decided.
func applyStitch(rec *record.Request, h *hit, st stitching) {
	rec.Session, rec.Key, rec.Linked = st.session, st.key, st.linked
	rec.ContinuedFrom = nil
	if st.from != "" {
		rec.ContinuedFrom = &record.Continued{Session: st.from, Kind: st.kind}
	}
	h.key, h.linked = st.key, st.linked
}

// linking reports whether any kind of stitching is on.
func (s *snapshot) linking() bool { return s.stitchRotation || s.stitchLogin }
