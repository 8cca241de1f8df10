package state

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// Batch collects the reads and writes one request makes, to be sent in one pipelined round
// trip by Exec. Each feature adds its commands and keeps the handles they return; after Exec
// the handles hold the answers. A Batch is used by one goroutine, once.
type Batch struct {
	c    *Client
	op   Op
	cmds []redis.Cmder
	// scripts are the EVALSHA commands, with what EVAL needs should Redis not know the script.
	scripts []scriptCall
	buf     [2]redis.Cmder
}

type scriptCall struct {
	cmd  *redis.Cmd
	s    *Script
	keys []string
	args []any
}

// NewBatch starts a batch for op.
func (c *Client) NewBatch(op Op) *Batch {
	b := &Batch{c: c, op: op}
	b.cmds = b.buf[:0]
	return b
}

// get adds a GET of key (prefixed already).
func (b *Batch) get(key string) *redis.StringCmd {
	cmd := redis.NewStringCmd(context.Background(), "get", key)
	b.cmds = append(b.cmds, cmd)
	return cmd
}

// run adds a run of s on keys (prefixed already) with args.
func (b *Batch) run(s *Script, keys []string, args ...any) *redis.Cmd {
	cmd := redis.NewCmd(context.Background(), s.evalArgs("evalsha", s.sha, keys, args)...)
	b.cmds = append(b.cmds, cmd)
	b.scripts = append(b.scripts, scriptCall{cmd: cmd, s: s, keys: keys, args: args})
	return cmd
}

// Exec sends the batch in one round trip bounded by state.redis.timeout. It returns false
// when the answers are unknown: the breaker is open (after tripAfter failures in a row), Redis
// failed or was too slow, or ctx ended. The caller then decides locally. A script Redis does not know yet (after a restart
// or SCRIPT FLUSH) is sent once more in full, which costs that one batch a second round trip.
func (b *Batch) Exec(ctx context.Context) bool {
	c := b.c
	if c.down.Load() {
		c.skipped[b.op].Add(1)
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	start := time.Now()
	err := b.send(ctx, b.cmds)
	if err == nil {
		err = b.rerunUnknownScripts(ctx)
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) {
			return false // the caller went away: not Redis's fault
		}
		c.fail(b.op, err)
		return false
	}
	c.ok()
	if c.roundTrip != nil {
		c.roundTrip(b.op, time.Since(start))
	}
	return true
}

// send writes cmds in one round trip and returns the first error that is not a missing key.
func (b *Batch) send(ctx context.Context, cmds []redis.Cmder) error {
	if len(cmds) == 1 {
		_ = b.c.rdb.Process(ctx, cmds[0])
	} else {
		p := b.c.rdb.Pipeline()
		for _, cmd := range cmds {
			_ = p.Process(ctx, cmd)
		}
		_, _ = p.Exec(ctx)
	}
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil && !errors.Is(err, redis.Nil) && !isNoScript(err) {
			return err
		}
	}
	return nil
}

// rerunUnknownScripts sends EVAL for every EVALSHA that met NOSCRIPT, in one more round trip.
func (b *Batch) rerunUnknownScripts(ctx context.Context) error {
	var again []redis.Cmder
	for i := range b.scripts {
		sc := &b.scripts[i]
		if !isNoScript(sc.cmd.Err()) {
			continue
		}
		retry := redis.NewCmd(ctx, sc.s.evalArgs("eval", sc.s.src, sc.keys, sc.args)...)
		again = append(again, retry)
		// The caller holds sc.cmd: it takes the answer of the retry.
		defer func() { sc.cmd.SetVal(retry.Val()); sc.cmd.SetErr(retry.Err()) }()
	}
	if len(again) == 0 {
		return nil
	}
	return b.send(ctx, again)
}

func isNoScript(err error) bool { return err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") }
