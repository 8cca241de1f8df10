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

// partScript applies the rule of the engine's live-part table (sessions/parts.go) to the
// state of one session, atomically: a request on a later day (t >= dayEnd) opens part 1 of
// its day; a request after an idle gap (offset - lastSeen > idle, idle > 0) opens the next
// part of the day; any other request, out of order ones included, joins the part and moves
// lastSeen to the latest. The state is "day dayEnd seq lastSeen": dayEnd in Unix seconds,
// lastSeen in nanoseconds from dayEnd (within a day, exact in Lua's doubles). It expires at
// the day's end plus the idle timeout plus a margin, and never sooner than that long after
// the update (by Redis's clock), so that a replay of past days keeps its state while it runs.
// The script returns the state.
//
// KEYS[1] the part key; ARGV: t's Unix seconds, t's nanoseconds, t's day, the Unix second
// that day ends, idle timeout in nanoseconds (0 = none), margin in seconds.
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
  local off = (tsec - send) * 1e9 + tns
  if tsec < send and (idle == 0 or off - last <= idle) then
    if off > last then last = off end
  else
    if sday == day then seq = seq + 1 else seq = 1 end
    sday, send, last = day, dayend, (tsec - dayend) * 1e9 + tns
  end
else
  sday, send, seq, last = day, dayend, 1, (tsec - dayend) * 1e9 + tns
end
local state = string.format('%s %.0f %d %.0f', sday, send, seq, last)
local keep = math.ceil(idle / 1e9) + margin
local now = tonumber(redis.call('TIME')[1])
redis.call('SET', KEYS[1], state, 'EXAT', math.max(send, now) + keep)
return state
`)

// Parts numbers session parts in the shared state: the engine's sessions.SharedParts.
type Parts struct{ c *Client }

var _ sessions.SharedParts = (*Parts)(nil)

// Parts returns the part numbering of c.
func (c *Client) Parts() *Parts { return &Parts{c: c} }

// PartRead is the answer of a part read added to a Batch; read it after Exec.
type PartRead struct{ cmd *redis.StringCmd }

// ReadPart adds a read of the shared part state of session id (one GET).
func (b *Batch) ReadPart(id string) PartRead {
	return PartRead{cmd: b.get(b.c.key("part", id))}
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
	return st, err == nil, err
}

// PartUpdate is the answer of a part update added to a Batch; read it after Exec.
type PartUpdate struct{ cmd *redis.Cmd }

// ObservePart adds the part rule applied to session id for the request q.
func (b *Batch) ObservePart(id string, q sessions.PartQuery) PartUpdate {
	cmd := b.run(partScript, []string{b.c.key("part", id)},
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
// An update whose answer is unreadable is not ok; the others keep theirs.
func (p *Parts) ObserveParts(ctx context.Context, us []sessions.PartUpdate) {
	b := p.c.NewBatch(OpObserve)
	cmds := make([]PartUpdate, len(us))
	for i := range us {
		us[i].OK = false
		cmds[i] = b.ObservePart(us[i].ID, us[i].Q)
	}
	if !b.Exec(ctx) {
		return
	}
	for i, u := range cmds {
		st, err := u.State()
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

// errPartState is a stored state this version cannot read; the request is decided locally.
var errPartState = errors.New("unreadable part state")

// parsePartState reads "day dayEnd seq lastSeen".
func parsePartState(s string) (sessions.PartState, error) {
	f := strings.Fields(s)
	if len(f) != 4 {
		return sessions.PartState{}, fmt.Errorf("%w: %d fields", errPartState, len(f))
	}
	end, err1 := strconv.ParseInt(f[1], 10, 64)
	seq, err2 := strconv.Atoi(f[2])
	last, err3 := strconv.ParseInt(f[3], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil || seq < 1 || len(f[0]) > 32 {
		return sessions.PartState{}, fmt.Errorf("%w: %q", errPartState, s)
	}
	return sessions.PartState{Day: f[0], DayEnd: end, Seq: seq, LastSeen: last}, nil
}
