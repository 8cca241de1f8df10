package state

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/apisessions/apisessions/sessions"
)

// partMargin keeps a part's state this long past its day's end plus the idle timeout, for
// requests whose streams finish late.
const partMargin = 10 * time.Minute

// A session's shared part state is two keys:
//
//   - <prefix>part:<id>, a string "day dayEnd seq lastSeen": the part's day, the Unix second
//     that day ends, its number within the day, and its latest request as of the last run of
//     partScript, in nanoseconds from dayEnd (within a day, exact in Lua's doubles);
//   - <prefix>last:<id>, a sorted set whose member is the part's day and whose score is the
//     latest request's time in the same unit: requests that join the part move it up with
//     ZADD XX GT (the join path), a native command, so that most requests do not run Lua.
//
// The latest request of the part is the greater of the two. Both keys expire together.

// partScript applies the rule of the engine's live-part table (sessions/parts.go) to the
// state of one session, atomically: a request on a later day (t >= dayEnd) opens part 1 of
// its day; a request after an idle gap (offset - lastSeen > idle, idle > 0) opens the next
// part of the day; any other request, out of order ones included, joins the part and moves
// lastSeen to the latest. The state expires at the day's end plus the idle timeout plus a
// margin, and never sooner than that long after the update (by Redis's clock), so that a replay
// of past days keeps its state while it runs. The script returns the state.
//
// KEYS[1] the part key, KEYS[2] the last key; ARGV: t's Unix seconds, t's nanoseconds, t's
// day, the Unix second that day ends, idle timeout in nanoseconds (0 = none), margin in seconds.
var partScript = NewScript(`
local tsec, tns = tonumber(ARGV[1]), tonumber(ARGV[2])
local day, dayend = ARGV[3], tonumber(ARGV[4])
local idle, margin = tonumber(ARGV[5]), tonumber(ARGV[6])
local sday, send, seq, last
local v = redis.call('GET', KEYS[1])
if v then
  sday, send, seq, last = string.match(v, '^(%S+) (%-?%d+) (%d+) (%-?%d+)$')
end
if sday then
  send, seq, last = tonumber(send), tonumber(seq), tonumber(last)
  local z = redis.call('ZSCORE', KEYS[2], sday)
  if z then
    z = tonumber(z)
    if z > last then last = z end
  end
  local off = (tsec - send) * 1e9 + tns
  if tsec < send and (idle == 0 or off - last <= idle) then
    if off > last then last = off end
  else
    if sday ~= day then redis.call('ZREM', KEYS[2], sday) end
    if sday == day then seq = seq + 1 else seq = 1 end
    sday, send, last = day, dayend, (tsec - dayend) * 1e9 + tns
  end
else
  sday, send, seq, last = day, dayend, 1, (tsec - dayend) * 1e9 + tns
end
local state = string.format('%s %.0f %d %.0f', sday, send, seq, last)
local keep = math.ceil(idle / 1e9) + margin
local now = tonumber(redis.call('TIME')[1])
local exat = math.max(send, now) + keep
redis.call('SET', KEYS[1], state, 'EXAT', exat)
redis.call('ZADD', KEYS[2], last, sday)
redis.call('EXPIREAT', KEYS[2], exat)
return state
`)

// Parts numbers session parts in the shared state: the engine's sessions.SharedParts.
type Parts struct{ c *Client }

var _ sessions.SharedParts = (*Parts)(nil)

// Parts returns the part numbering of c.
func (c *Client) Parts() *Parts { return &Parts{c: c} }

// PartRead is the answer of a part read added to a Batch; read it after Exec.
type PartRead struct {
	cmd  *redis.StringCmd
	last *redis.ZSliceCmd
}

// ReadPart adds a read of the shared part state of session id (a GET and a ZRANGE of its
// latest request time).
func (b *Batch) ReadPart(id string) PartRead {
	r := PartRead{cmd: b.get(b.c.key("part", id))}
	r.last = redis.NewZSliceCmd(context.Background(), "zrange", b.c.key("last", id), 0, -1, "withscores")
	b.cmds = append(b.cmds, r.last)
	return r
}

// State is the state read: found is false when the session has none.
func (r PartRead) State() (st sessions.PartState, found bool, err error) {
	s, err := r.cmd.Result()
	if errors.Is(err, redis.Nil) {
		return st, false, nil
	}
	if err != nil {
		return st, false, err
	}
	st, err = parsePartState(s)
	if err != nil {
		return st, false, err
	}
	if zs, err := r.last.Result(); err == nil {
		for _, z := range zs {
			if m, _ := z.Member.(string); m == st.Day && int64(z.Score) > st.LastSeen {
				st.LastSeen = int64(z.Score)
			}
		}
	}
	return st, true, nil
}

// PartJoin is the answer of a join added to a Batch; read it after Exec.
type PartJoin struct {
	read valueRead
}

// JoinPart adds the join path of request q of session id: the engine's own live part, of
// q's day, says the request joins it, so its time moves the part's latest request up (ZADD XX
// GT: only an existing member of that day, never down) and the state is read back. The join
// holds when the state read names the part the engine has (Joined); else the request must go
// through ObservePart.
func (b *Batch) JoinPart(id string, q sessions.PartQuery) PartJoin {
	b.moveLast(id, q)
	return PartJoin{read: valueRead{one: b.get(b.c.key("part", id))}}
}

// moveLast adds the join path's write: q's time moves the latest request of session id's
// part of q's day up.
func (b *Batch) moveLast(id string, q sessions.PartQuery) {
	off := q.T.Sub(time.Unix(q.DayEnd, 0)).Nanoseconds()
	b.cmds = append(b.cmds, redis.NewIntCmd(context.Background(), "zadd", b.c.key("last", id), "xx", "gt", off, q.Day))
}

// Joined reports whether the shared state names the part day.seq, and returns the state.
func (j PartJoin) Joined(day string, seq int) (sessions.PartState, bool) {
	s, err := j.read.result()
	if err != nil {
		return sessions.PartState{}, false
	}
	st, err := parsePartState(s)
	return st, err == nil && st.Day == day && st.Seq == seq
}

// valueRead is a string read in a batch: a GET of its own (one), or the at-th key of an MGET
// shared with other reads (many).
type valueRead struct {
	one  *redis.StringCmd
	many *redis.SliceCmd
	at   int
}

// result is the value read; redis.Nil when the key has none.
func (r valueRead) result() (string, error) {
	if r.one != nil {
		return r.one.Result()
	}
	vs, err := r.many.Result()
	if err != nil {
		return "", err
	}
	if r.at >= len(vs) {
		return "", fmt.Errorf("%w: %d values for %d keys", errUnreadable, len(vs), r.at+1)
	}
	v, ok := vs[r.at].(string)
	if !ok {
		return "", redis.Nil
	}
	return v, nil
}

// PartUpdate is the answer of a part update added to a Batch; read it after Exec.
type PartUpdate struct{ cmd *redis.Cmd }

// ObservePart adds the part rule applied to session id for the request q.
func (b *Batch) ObservePart(id string, q sessions.PartQuery) PartUpdate {
	cmd := b.run(partScript, []string{b.c.key("part", id), b.c.key("last", id)},
		q.T.Unix(), q.T.Nanosecond(), q.Day, q.DayEnd, int64(max(0, q.Idle)), int64(partMargin/time.Second))
	return PartUpdate{cmd: cmd}
}

// State is the part's state after the update.
func (u PartUpdate) State() (sessions.PartState, error) {
	s, err := u.cmd.Text()
	if err != nil {
		return sessions.PartState{}, err
	}
	return parsePartState(s)
}

// ObservePart applies the part rule to the shared state of session id in one round trip.
func (p *Parts) ObservePart(ctx context.Context, id string, q sessions.PartQuery) (sessions.PartState, bool) {
	us := [1]sessions.PartUpdate{{ID: id, Q: q}}
	p.ObserveParts(ctx, us[:])
	return us[0].State, us[0].OK
}

// ObserveParts applies the part rule for each update, in order, in one pipelined round trip.
// An update with a join hint (the engine's own live part, named by the shared state, says the
// request joins it) takes the join path: native commands instead of the script. A join the
// shared state does not confirm (another replica opened a newer part meanwhile) runs the script
// in a second round trip, with the others that need it. An update whose answer is unreadable
// is not ok; the others keep theirs.
//
// The joins of sessions that run no script in the batch go first, and read their parts back
// together in one MGET after all their ZADDs: nothing else in the batch touches those keys, so
// each read sees what it would right after its own ZADD, and Redis parses and runs one command
// for their reads instead of one each. A session that runs the script keeps its updates in
// order, each join read right after its ZADD.
func (p *Parts) ObserveParts(ctx context.Context, us []sessions.PartUpdate) {
	b := p.c.newBatch(OpObserve, 2*len(us)+1)
	now := time.Now().Unix()
	// Only on the part's own day: the keys then live past the day's end, as the script set
	// them, and a join needs no new expiry.
	joinable := func(u *sessions.PartUpdate) bool { return u.JoinSeq > 0 && u.Q.DayEnd > now }
	var scripted map[string]bool
	for i := range us {
		if u := &us[i]; !joinable(u) {
			if scripted == nil {
				scripted = make(map[string]bool)
			}
			scripted[u.ID] = true
		}
	}
	cmds := make([]PartUpdate, len(us))
	joins := make([]PartJoin, len(us))
	var keys []string // the parts the batched joins read, in the order of their updates
	for i := range us {
		u := &us[i]
		u.OK = false
		if joinable(u) && !scripted[u.ID] {
			b.moveLast(u.ID, u.Q)
			joins[i].read.at = len(keys)
			keys = append(keys, b.c.key("part", u.ID))
		}
	}
	var mget *redis.SliceCmd
	if len(keys) > 0 {
		mget = b.mget(keys)
	}
	for i := range us {
		switch u := &us[i]; {
		case !joinable(u):
			cmds[i] = b.ObservePart(u.ID, u.Q)
		case scripted[u.ID]:
			joins[i] = b.JoinPart(u.ID, u.Q)
		default:
			joins[i].read.many = mget
		}
	}
	if !b.Exec(ctx) {
		return
	}
	var again []int
	for i := range us {
		u := &us[i]
		if joins[i].read != (valueRead{}) {
			if st, ok := joins[i].Joined(u.Q.Day, u.JoinSeq); ok {
				u.State, u.OK = st, true
				p.c.joins.Add(1)
			} else {
				again = append(again, i)
			}
			continue
		}
		st, err := cmds[i].State()
		if err != nil {
			p.c.count(OpObserve, err)
			continue
		}
		u.State, u.OK = st, true
	}
	if len(again) == 0 {
		return
	}
	p.c.joinsRefused.Add(uint64(len(again)))
	b = p.c.NewBatch(OpObserve)
	for _, i := range again {
		cmds[i] = b.ObservePart(us[i].ID, us[i].Q)
	}
	if !b.Exec(ctx) {
		return
	}
	for _, i := range again {
		st, err := cmds[i].State()
		if err != nil {
			p.c.count(OpObserve, err)
			continue
		}
		us[i].State, us[i].OK = st, true
	}
}

// PeekPart reads the shared state of session id in one round trip (a GET).
func (p *Parts) PeekPart(ctx context.Context, id string) (sessions.PartState, bool, bool) {
	b := p.c.NewBatch(OpPeek)
	r := b.ReadPart(id)
	if !b.Exec(ctx) {
		return sessions.PartState{}, false, false
	}
	st, found, err := r.State()
	if err != nil {
		p.c.count(OpPeek, err)
		return sessions.PartState{}, false, false
	}
	return st, found, true
}

// errUnreadable is an answer this version cannot read: a stored part state, a stitch answer,
// or a reply that does not fit the batch. The request it was for is decided locally.
var errUnreadable = errors.New("unreadable shared state")

// parsePartState reads "day dayEnd seq lastSeen" (one space between fields, as the scripts
// write it).
func parsePartState(s string) (sessions.PartState, error) {
	day, rest, ok1 := strings.Cut(s, " ")
	endS, rest, ok2 := strings.Cut(rest, " ")
	seqS, lastS, ok3 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || !ok3 {
		return sessions.PartState{}, fmt.Errorf("%w: %q", errUnreadable, s)
	}
	end, err1 := strconv.ParseInt(endS, 10, 64)
	seq, err2 := strconv.Atoi(seqS)
	last, err3 := strconv.ParseInt(lastS, 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil || seq < 1 || day == "" || len(day) > 32 {
		return sessions.PartState{}, fmt.Errorf("%w: %q", errUnreadable, s)
	}
	return sessions.PartState{Day: day, DayEnd: end, Seq: seq, LastSeen: last}, nil
}
