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

// A stitching link is one key, <prefix>link:<id> for the session id of the linked value (never
// the value), holding "kind root last dayEnd": the kind (r rotation, l login, i issued, a
// ambiguous, c the claim of a fallback session, then keyed <prefix>claim:<fallback id>), the
// root session, the latest request that made or followed it in nanoseconds from dayEnd, and
// the Unix second the day of the part it was made in ends. A link is live until that second
// and, with an idle timeout, until the idle time after its latest request: the script checks
// both at each read, and the key expires at the day's end plus the idle timeout plus a margin
// (never sooner than that long after the write, by Redis's clock).

// linkScript is the engine's stitch stage (sessions/stitch.go) on the shared links, for one
// exchange, atomically. KEYS: the carried value's link key, the claim key of its fallback
// session, then for each issued value its link key, part key and last key. ARGV: t's Unix
// seconds, t's nanoseconds, t's day end, idle (ns), margin (s), the carried session id, the
// flags (f fallback, a anonymous, r rotation on, l login on, p response-side key first), the
// number n of issued values, then n session ids and n flags (1 a candidate cookie), then the
// root the replica's own links continue the carried value into (” none; flag L: a login
// link), which the script follows and shares when Redis has no link for the value.
//
// It returns {session, decided (0 the carried value, i the i-th issued), from, kind, linked,
// learned}: learned has a '1' for each issued value it kept as issued (a value that continues no
// other session, such as a first-party cookie the client may send back), '0' for the others.
var linkScript = NewScript(`
local tsec, tns, dayend = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local idle, margin = tonumber(ARGV[4]), tonumber(ARGV[5])
local carried, flags, n = ARGV[6], ARGV[7], tonumber(ARGV[8])
local fallback, anon = string.find(flags, 'f', 1, true), string.find(flags, 'a', 1, true)
local rotation, login = string.find(flags, 'r', 1, true), string.find(flags, 'l', 1, true)
local respfirst = string.find(flags, 'p', 1, true)
local now = tonumber(redis.call('TIME')[1])
local exat = math.max(dayend, now) + math.ceil(idle / 1e9) + margin

local function off(dend) return (tsec - dend) * 1e9 + tns end
local function read(k)
  local v = redis.call('GET', k)
  if not v then return nil end
  local kind, root, last, dend = string.match(v, '^(%a) (%S+) (%-?%d+) (%-?%d+)$')
  if not kind then return nil end
  last, dend = tonumber(last), tonumber(dend)
  if tsec >= dend or (idle > 0 and off(dend) - last > idle) then return nil end
  return {kind = kind, root = root, last = last, dend = dend}
end
local function write(k, kind, root, last, dend)
  redis.call('SET', k, string.format('%s %s %.0f %.0f', kind, root, last, dend), 'EXAT', math.max(dend, now) + math.ceil(idle / 1e9) + margin)
end
local function follow(k)
  local l = read(k)
  if l and (l.kind == 'r' or l.kind == 'l') then
    if off(l.dend) > l.last then write(k, l.kind, l.root, off(l.dend), l.dend) end
    return l
  end
  return nil
end
local function put(k, kind, root)
  local l = read(k)
  if l then
    if l.root ~= root and l.kind ~= 'a' and l.kind ~= 'c' then write(k, 'a', l.root, l.last, l.dend) end
    return false
  end
  write(k, kind, root, off(dayend), dayend)
  return true
end
local function live(pk, lk)
  local v = redis.call('GET', pk)
  if not v then return false end
  local sday, send, seq, last = string.match(v, '^(%S+) (%-?%d+) (%d+) (%-?%d+)$')
  if not sday then return false end
  send, last = tonumber(send), tonumber(last)
  local z = redis.call('ZSCORE', lk, sday)
  if z and tonumber(z) > last then last = tonumber(z) end
  return tsec < send and (idle == 0 or off(send) - last <= idle)
end

local session, decided, from, kind, linked = carried, 0, '', '', 0
local localroot = ARGV[9 + 2 * n]
if not fallback then
  local l = follow(KEYS[1])
  if l and l.root ~= carried then
    session, from, kind = l.root, carried, l.kind
  elseif not l and localroot ~= '' and not read(KEYS[1]) then
    -- A link the replica made while Redis was away: shared from now on.
    local lk = 'r'
    if string.find(flags, 'L', 1, true) then lk = 'l' end
    put(KEYS[1], lk, localroot)
    session, from, kind = localroot, carried, lk
  end
end
if n == 0 then return {session, decided, from, kind, linked, ''} end
local fresh = {}
for i = 1, n do
  local id, lk = ARGV[8 + i], KEYS[3 * i]
  if id ~= carried and id ~= session then
    local l = read(lk)
    if l then
      if l.root ~= session then put(lk, 'i', session) end
    elseif not live(KEYS[3 * i + 1], KEYS[3 * i + 2]) then
      table.insert(fresh, i)
    end
  end
end
local linkable = rotation
if anon then linkable = login end
local claimed = false
if linkable and #fresh > 0 and fallback then
  claimed = not put(KEYS[2], 'c', carried)
  linkable = not claimed
end
if linkable and #fresh > 0 then
  local k = 'r'
  if anon then k = 'l' end
  for _, i in ipairs(fresh) do
    if put(KEYS[3 * i], k, session) then linked = linked + 1 end
  end
  if respfirst then decided = 1 end
  return {session, decided, from, kind, linked, ''}
end
local learned = {}
for i = 1, n do learned[i] = '0' end
for _, i in ipairs(fresh) do
  if not (ARGV[8 + n + i] == '1' and claimed) and put(KEYS[3 * i], 'i', ARGV[8 + i]) then learned[i] = '1' end
end
local d = 0
if respfirst then
  d = 1
elseif anon then
  for _, i in ipairs(fresh) do
    if ARGV[8 + n + i] ~= '1' then d = i; break end
  end
end
if d > 0 then
  session, decided, from, kind = ARGV[8 + d], d, '', ''
  local l = follow(KEYS[3 * d])
  if l and l.root ~= session then session, from, kind = l.root, ARGV[8 + d], l.kind end
end
return {session, decided, from, kind, linked, table.concat(learned)}
`)

// Links keeps the stitching links in the shared state: the engine's sessions.SharedLinks.
type Links struct{ c *Client }

var _ sessions.SharedLinks = (*Links)(nil)

// Links returns the shared links of c.
func (c *Client) Links() *Links { return &Links{c: c} }

// Stitch runs the stitch stage for each op, in order. Most requests issue nothing and carry a
// value no link continues: their stage is a read of the carried value's link that finds none
// (and a fallback session, which no link continues, reads nothing). Those reads go first, all
// in one MGET; then the requests whose response issued values run the script, in the same
// round trip. A request whose read finds a live link runs the script in a second, since
// following a link writes its idle clock. An op whose answer is unreadable is not ok; the
// others keep theirs.
func (l *Links) Stitch(ctx context.Context, ops []sessions.LinkOp) {
	b := l.c.NewBatch(OpObserve)
	cmds := make([]*redis.Cmd, len(ops))
	reads := make([]int, len(ops))   // 1 + the op's key in the MGET; 0: none
	second := make([]bool, len(ops)) // ops that run the script in the second round trip
	// touched holds the links an earlier script of this batch may write: the values it carried
	// and issued. A request carrying one runs the script after it rather than read its link
	// before it (the MGET goes first; and a script Redis had to load again, after a restart or
	// SCRIPT FLUSH, runs after the pipeline's other commands).
	var touched map[string]bool
	var keys []string
	scripts := false
	for i := range ops {
		op := &ops[i]
		op.OK = false
		switch {
		case len(op.Issued) == 0 && op.Fallback:
			op.Session, op.Decided, op.From, op.Kind, op.Linked, op.OK = op.Carried, 0, "", "", 0, true
		case len(op.Issued) == 0 && touched[op.Carried]:
			second[i] = true
		case len(op.Issued) == 0:
			keys = append(keys, l.c.key("link", op.Carried))
			reads[i] = len(keys)
		default:
			scripts = true
			if touched == nil {
				touched = map[string]bool{}
			}
			touched[op.Carried] = true
			for _, iv := range op.Issued {
				touched[iv.Session] = true
			}
		}
	}
	var mget *redis.SliceCmd
	if len(keys) > 0 {
		mget = b.mget(keys)
	}
	if scripts {
		for i := range ops {
			if len(ops[i].Issued) > 0 {
				cmds[i] = l.script(b, &ops[i])
			}
		}
	}
	if !b.Exec(ctx) {
		return
	}
	for i := range ops {
		op := &ops[i]
		switch {
		case cmds[i] != nil:
			if err := parseStitch(cmds[i].Val(), op); err != nil {
				l.c.count(OpObserve, err)
				continue
			}
			op.OK = true
		case reads[i] > 0:
			v, err := valueRead{many: mget, at: reads[i] - 1}.result()
			if err != nil && !errors.Is(err, redis.Nil) {
				l.c.count(OpObserve, err)
				continue
			}
			if follows(v, op) || (op.LocalRoot != "" && v == "") {
				second[i] = true
				continue
			}
			op.Session, op.Decided, op.From, op.Kind, op.Linked, op.OK = op.Carried, 0, "", "", 0, true
		}
	}
	var again *Batch
	for i := range ops {
		if second[i] {
			if again == nil {
				again = l.c.NewBatch(OpObserve)
			}
			cmds[i] = l.script(again, &ops[i])
		}
	}
	if again == nil || !again.Exec(ctx) {
		return
	}
	for i := range ops {
		if second[i] {
			if err := parseStitch(cmds[i].Val(), &ops[i]); err != nil {
				l.c.count(OpObserve, err)
				continue
			}
			ops[i].OK = true
		}
	}
}

// follows reports whether the link value v (the script's form) continues op's carried value
// into another session at op's time: a rotation or login link, not ended by its day or its
// idle clock.
func follows(v string, op *sessions.LinkOp) bool {
	f := strings.Fields(v)
	if len(f) != 4 || (f[0] != "r" && f[0] != "l") || f[1] == op.Carried {
		return false
	}
	last, err1 := strconv.ParseInt(f[2], 10, 64)
	dayEnd, err2 := strconv.ParseInt(f[3], 10, 64)
	if err1 != nil || err2 != nil || op.T.Unix() >= dayEnd {
		return false
	}
	idle := int64(max(0, op.Idle))
	return idle == 0 || op.T.Sub(time.Unix(dayEnd, 0)).Nanoseconds()-last <= idle
}

// script adds op's stitch script to b.
func (l *Links) script(b *Batch, op *sessions.LinkOp) *redis.Cmd {
	keys := make([]string, 0, 2+3*len(op.Issued))
	keys = append(keys, l.c.key("link", op.Carried), l.c.key("claim", op.Carried))
	args := make([]any, 0, 8+2*len(op.Issued))
	var flags strings.Builder
	for _, f := range []struct {
		on bool
		c  byte
	}{{op.Fallback, 'f'}, {op.Anonymous, 'a'}, {op.Rotation, 'r'}, {op.Login, 'l'}, {op.RespFirst, 'p'},
		{op.LocalKind == sessions.StitchLogin, 'L'}} {
		if f.on {
			flags.WriteByte(f.c)
		}
	}
	flags.WriteByte('-')
	args = append(args, op.T.Unix(), op.T.Nanosecond(), op.DayEnd, int64(max(0, op.Idle)),
		int64(partMargin/time.Second), op.Carried, flags.String(), len(op.Issued))
	for _, iv := range op.Issued {
		keys = append(keys, l.c.key("link", iv.Session), l.c.key("part", iv.Session), l.c.key("last", iv.Session))
		args = append(args, iv.Session)
	}
	for _, iv := range op.Issued {
		c := "0"
		if iv.Candidate {
			c = "1"
		}
		args = append(args, c)
	}
	args = append(args, op.LocalRoot)
	return b.run(linkScript, keys, args...)
}

// parseStitch reads the script's answer into op.
func parseStitch(v any, op *sessions.LinkOp) error {
	a, ok := v.([]any)
	if !ok || len(a) != 6 {
		return fmt.Errorf("%w: stitch answer %T", errUnreadable, v)
	}
	s, _ := a[0].(string)
	d, _ := a[1].(int64)
	from, _ := a[2].(string)
	kind, _ := a[3].(string)
	n, _ := a[4].(int64)
	learned, _ := a[5].(string)
	if !strings.HasPrefix(s, "s_") || d < 0 || int(d) > len(op.Issued) || n < 0 {
		return fmt.Errorf("%w: stitch answer", errUnreadable)
	}
	op.Session, op.Decided, op.From, op.Linked = s, int(d), from, int(n)
	op.Learned = op.Learned[:0]
	for i := 0; i < len(learned) && i < len(op.Issued); i++ {
		op.Learned = append(op.Learned, learned[i] == '1')
	}
	switch kind {
	case "r":
		op.Kind = sessions.StitchRotation
	case "l":
		op.Kind = sessions.StitchLogin
	default:
		op.Kind = ""
	}
	return nil
}
