package state

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/apisessions/apisessions/protect"
	"github.com/apisessions/apisessions/protect/manual"
	"github.com/apisessions/apisessions/sessions"
)

// bucketScript takes a token from a rate-limit bucket shared by every replica, by Redis's
// clock so that replicas whose clocks differ agree. The state is "tokens last" (seconds, with
// microseconds); it expires once the bucket would be full again, plus a minute.
//
// KEYS[1] the bucket; ARGV: tokens per second, the bucket's size. Returns {1 or 0, tokens left}.
var bucketScript = NewScript(`
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local tokens, last = burst, now
local v = redis.call('GET', KEYS[1])
if v then
  local a, b = string.match(v, '^(%S+) (%S+)$')
  if a then tokens, last = tonumber(a), tonumber(b) end
end
if now > last then
  tokens = math.min(burst, tokens + (now - last) * rate)
  last = now
end
local ok = 0
if tokens >= 1 then
  tokens = tokens - 1
  ok = 1
end
redis.call('SET', KEYS[1], string.format('%.6f %.6f', tokens, last), 'EX', math.ceil(burst / rate) + 60)
return {ok, string.format('%.6f', tokens)}
`)

// Protection is the protection state replicas share: rate-limit buckets taken in the request's
// one round trip, and manual blocks kept in Redis and pushed to every replica.
type Protection struct{ c *Client }

var _ protect.Shared = (*Protection)(nil)

// Protection returns the shared protection state of c.
func (c *Client) Protection() *Protection { return &Protection{c: c} }

// Bounds of the shared audit log.
const (
	auditPerID = 100
	auditKeep  = 400 * 24 * time.Hour
)

// Decide sends, in one pipelined round trip, the read of session's part state (when readPart)
// and a take from each bucket; it fills each take's OK and Left. ok is false when Redis did
// not answer in time, and the caller decides on its own state.
func (p *Protection) Decide(ctx context.Context, session string, readPart bool, takes []protect.Take) (st sessions.PartState, found, ok bool) {
	return p.DecideWindows(ctx, session, readPart, takes, nil)
}

var errBucket = errors.New("unreadable bucket answer")

// bucketID names a bucket by its rule, subject and route; subject (a user may be long) and
// route are hashed so that the key stays short whatever the request carried.
func bucketID(t protect.Take) string {
	h := fnv.New64a()
	h.Write([]byte(t.Subject))
	if t.Route != "" {
		h.Write([]byte{0})
		h.Write([]byte(t.Route))
	}
	return t.Rule + ":" + strconv.FormatUint(h.Sum64(), 16)
}

// blockField is a block's field in the blocks hash and its message on the channel.
func blockField(kind, id string) string { return kind + ":" + id }

// PutBlock keeps a block in Redis, appends its audit entry and tells every replica.
func (p *Protection) PutBlock(ctx context.Context, b manual.Block, e manual.AuditEntry) error {
	v, err := json.Marshal(b)
	if err != nil {
		return err
	}
	return p.change(ctx, e, func(pipe redis.Pipeliner, field string) {
		pipe.HSet(ctx, p.c.prefix+"blocks", field, v)
	})
}

// DeleteBlock removes a block from Redis, appends its audit entry and tells every replica.
func (p *Protection) DeleteBlock(ctx context.Context, kind, id string, e manual.AuditEntry) error {
	return p.change(ctx, e, func(pipe redis.Pipeliner, field string) {
		pipe.HDel(ctx, p.c.prefix+"blocks", field)
	})
}

func (p *Protection) change(ctx context.Context, e manual.AuditEntry, op func(redis.Pipeliner, string)) error {
	a, err := json.Marshal(e)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, max(p.c.timeout, time.Second))
	defer cancel()
	field := blockField(e.Kind, e.ID)
	audit := p.c.key("audit", field)
	_, err = p.c.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		op(pipe, field)
		pipe.RPush(ctx, audit, a)
		pipe.LTrim(ctx, audit, -auditPerID, -1)
		pipe.PExpire(ctx, audit, auditKeep)
		pipe.Publish(ctx, p.c.prefix+"blocks", field)
		return nil
	})
	return err
}

// Audit reads the shared audit log of a session or a user, oldest first.
func (p *Protection) Audit(ctx context.Context, kind, id string) ([]manual.AuditEntry, error) {
	ctx, cancel := context.WithTimeout(ctx, max(p.c.timeout, time.Second))
	defer cancel()
	vals, err := p.c.rdb.LRange(ctx, p.c.key("audit", blockField(kind, id)), 0, -1).Result()
	if err != nil {
		return nil, err
	}
	out := make([]manual.AuditEntry, 0, len(vals))
	for _, v := range vals {
		var e manual.AuditEntry
		if json.Unmarshal([]byte(v), &e) == nil {
			out = append(out, e)
		}
	}
	return out, nil
}

// Blocks reads every block kept in Redis.
func (p *Protection) Blocks(ctx context.Context) ([]manual.Block, error) {
	ctx, cancel := context.WithTimeout(ctx, max(p.c.timeout, 5*time.Second))
	defer cancel()
	m, err := p.c.rdb.HGetAll(ctx, p.c.prefix+"blocks").Result()
	if err != nil {
		return nil, err
	}
	out := make([]manual.Block, 0, len(m))
	for field, v := range m {
		var b manual.Block
		if json.Unmarshal([]byte(v), &b) == nil && blockField(b.Kind, b.ID) == field {
			out = append(out, b)
		}
	}
	return out, nil
}

// Block reads one block; found is false when Redis holds none for kind and id.
func (p *Protection) Block(ctx context.Context, kind, id string) (b manual.Block, found bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, max(p.c.timeout, time.Second))
	defer cancel()
	v, err := p.c.rdb.HGet(ctx, p.c.prefix+"blocks", blockField(kind, id)).Result()
	if errors.Is(err, redis.Nil) {
		return b, false, nil
	}
	if err != nil {
		return b, false, err
	}
	if err := json.Unmarshal([]byte(v), &b); err != nil {
		return b, false, err
	}
	return b, true, nil
}

// WatchBlocks calls changed with the kind and id of every block another replica (or this one)
// changes, until ctx ends. A subscription that breaks is made again by the client; what
// changed meanwhile is caught by the caller's periodic reload.
func (p *Protection) WatchBlocks(ctx context.Context, changed func(kind, id string)) {
	sub := p.c.rdb.Subscribe(ctx, p.c.prefix+"blocks")
	defer sub.Close()
	ch := sub.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			kind, id, found := strings.Cut(m.Payload, ":")
			if found {
				changed(kind, id)
			}
		}
	}
}

// windowScript runs one operation on a sliding window shared by every replica, by Redis's
// clock in milliseconds. A window of events is a sorted set (member → last seen), trimmed to
// its horizon and to its most recent limit members; a sequence or requires window is a string
// ("step start", or the time of the step). Each key expires with its window.
//
// KEYS[1] the window (for via: the window holding the id of the window to count).
// ARGV: kind, within ms, horizon ms, limit, member, mask or check, steps, step, via prefix.
// Returns the events within the window, or 1 when a sequence or requires fired.
var windowScript = NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local kind, key = ARGV[1], KEYS[1]
local within, horizon, limit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if kind == 'via' then
  local id = redis.call('GET', key)
  if not id then return 0 end
  key, kind = ARGV[9] .. id, 'count'
end
if kind == 'add' then
  redis.call('ZADD', key, now, ARGV[5])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - horizon)
  local n = redis.call('ZCARD', key)
  if n > limit then redis.call('ZREMRANGEBYRANK', key, 0, n - limit - 1) end
  redis.call('PEXPIRE', key, horizon)
  return redis.call('ZCOUNT', key, '(' .. (now - within), '+inf')
elseif kind == 'count' then
  return redis.call('ZCOUNT', key, '(' .. (now - within), '+inf')
elseif kind == 'seq' then
  local mask, steps = tonumber(ARGV[6]), tonumber(ARGV[7])
  local step, start = 0, 0
  local v = redis.call('GET', key)
  if v then
    local a, b = string.match(v, '^(%d+) (%d+)$')
    if a then step, start = tonumber(a), tonumber(b) end
  end
  if step > 0 and now - start >= within then step = 0 end
  local fired = 0
  if bit.band(mask, bit.lshift(1, step)) ~= 0 then
    if step == 0 then start = now end
    step = step + 1
    if step == steps then fired, step = 1, 0 end
  elseif bit.band(mask, 1) ~= 0 then
    step, start = 1, now
  end
  redis.call('SET', key, step .. ' ' .. start, 'PX', within)
  return fired
elseif kind == 'req' then
  local fired = 0
  if ARGV[6] == '1' then
    local v = tonumber(redis.call('GET', key) or '')
    if not v or now - v >= within then fired = 1 end
  end
  if ARGV[8] == '1' then redis.call('SET', key, now, 'PX', within) end
  return fired
elseif kind == 'set' then
  redis.call('SET', key, ARGV[5], 'PX', horizon)
end
return 0
`)

var winKinds = [...]string{protect.WinAdd: "add", protect.WinCount: "count", protect.WinSequence: "seq", protect.WinRequires: "req", protect.WinSet: "set"}

// windowID hashes a window's subject and route, so that the key stays short whatever the
// request carried.
func windowID(subject, route string) string {
	h := fnv.New64a()
	h.Write([]byte(subject))
	if route != "" {
		h.Write([]byte{0})
		h.Write([]byte(route))
	}
	return strconv.FormatUint(h.Sum64(), 16)
}

// memberID is what a window's sorted set holds for a member: a digest, so that an
// enumerated id or a username, which the request carried and may be long or secret, is
// neither kept in Redis nor able to grow its memory. Every replica computes the same digest,
// so a member added twice still counts once.
func memberID(m string) string {
	sum := sha256.Sum256([]byte(m))
	return hex.EncodeToString(sum[:12])
}

// runWindow adds op to b.
func (p *Protection) runWindow(b *Batch, op *protect.WindowOp) *redis.Cmd {
	kind, key, member := winKinds[op.Kind], p.c.key("win", op.What+":"+windowID(op.Subject, op.Route)), op.Member
	via := ""
	if op.Kind == protect.WinCount && op.Via != "" {
		kind, key = "via", p.c.key("win", "login:last:"+windowID(op.Via, ""))
		via = p.c.key("win", op.What+":")
	}
	switch op.Kind {
	case protect.WinSet:
		// The value names the window of the subject it holds, as windowID does.
		member = windowID(op.Member, "")
	case protect.WinAdd:
		member = memberID(op.Member)
	}
	flag := func(v bool) string {
		if v {
			return "1"
		}
		return "0"
	}
	check := strconv.FormatUint(uint64(op.Mask), 10)
	if op.Kind == protect.WinRequires {
		check = flag(op.Check)
	}
	return b.run(windowScript, []string{key}, kind, op.Within.Milliseconds(), max(op.Horizon, op.Within).Milliseconds(),
		op.Limit, member, check, op.Steps, flag(op.Step), via)
}

// DecideWindows is Decide with window operations in the same round trip; it fills each
// operation's answer.
func (p *Protection) DecideWindows(ctx context.Context, session string, readPart bool, takes []protect.Take, ops []protect.WindowOp) (st sessions.PartState, found, ok bool) {
	b := p.c.NewBatch(OpPeek)
	var pr PartRead
	if readPart {
		pr = b.ReadPart(session)
	}
	tcmds := make([]*redis.Cmd, len(takes))
	for i, t := range takes {
		tcmds[i] = b.run(bucketScript, []string{p.c.key("bucket", bucketID(t))}, strconv.FormatFloat(t.PerSecond, 'g', -1, 64), strconv.FormatFloat(t.Burst, 'g', -1, 64))
	}
	wcmds := make([]*redis.Cmd, len(ops))
	for i := range ops {
		wcmds[i] = p.runWindow(b, &ops[i])
	}
	if !b.Exec(ctx) {
		return st, false, false
	}
	if !p.readTakes(tcmds, takes) {
		return st, false, false
	}
	for i, cmd := range wcmds {
		n, err := cmd.Int64()
		if err != nil {
			p.c.count(OpPeek, errors.Join(errWindow, err))
			return st, false, false
		}
		ops[i].N, ops[i].Fired = int(n), n == 1
	}
	if !readPart {
		return st, false, true
	}
	st, found, err := pr.State()
	if err != nil {
		p.c.count(OpPeek, err)
		return st, false, false
	}
	return st, found, true
}

var errWindow = errors.New("unreadable window answer")

// Record applies window operations nobody waits for (login outcomes), in one round trip.
func (p *Protection) Record(ctx context.Context, ops []protect.WindowOp) error {
	b := p.c.NewBatch(OpObserve)
	for i := range ops {
		p.runWindow(b, &ops[i])
	}
	if !b.Exec(ctx) {
		return errWindow
	}
	return b.err()
}

var _ protect.SharedWindows = (*Protection)(nil)

// readTakes reads the bucket script's answers into takes; false (counted) when one is
// unreadable.
func (p *Protection) readTakes(cmds []*redis.Cmd, takes []protect.Take) bool {
	for i, cmd := range cmds {
		vals, err := cmd.Slice()
		if err != nil || len(vals) != 2 {
			p.c.count(OpPeek, errors.Join(errBucket, err))
			return false
		}
		n, _ := vals[0].(int64)
		s, _ := vals[1].(string)
		left, err := strconv.ParseFloat(s, 64)
		if err != nil {
			p.c.count(OpPeek, errBucket)
			return false
		}
		takes[i].OK, takes[i].Left = n == 1, left
	}
	return true
}
