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

// newBatch starts a batch for op with room for n commands.
func (c *Client) newBatch(op Op, n int) *Batch {
	if n <= len(Batch{}.buf) {
		return c.NewBatch(op)
	}
	return &Batch{c: c, op: op, cmds: make([]redis.Cmder, 0, n)}
}

// get adds a GET of key (prefixed already).
func (b *Batch) get(key string) *redis.StringCmd {
	cmd := redis.NewStringCmd(context.Background(), "get", key)
	b.cmds = append(b.cmds, cmd)
	return cmd
}

// mget adds one MGET of keys (prefixed already): one command however many keys, a value or
// nil for each.
func (b *Batch) mget(keys []string) *redis.SliceCmd {
	args := make([]any, 0, 1+len(keys))
	args = append(args, "mget")
	for _, k := range keys {
		args = append(args, k)
	}
	cmd := redis.NewSliceCmd(context.Background(), args...)
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

// Exec sends the batch, bounded by state.redis.timeout. Batches of concurrent requests
// share one pipelined round trip (see coalescer), so that from each request's point of view
// it is one round trip. Exec returns false when the answers are unknown: the breaker is open
// (after tripAfter failed round trips in a row), Redis failed or was too slow, or ctx ended.
// The caller then decides locally. A script Redis does not know yet (after a restart or
// SCRIPT FLUSH) is sent once more in full, which costs that round a second round trip.
func (b *Batch) Exec(ctx context.Context) bool {
	c := b.c
	if c.down.Load() {
		c.skipped[b.op].Add(1)
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	start := time.Now()
	if err := c.exec(ctx, b); err != nil {
		if errors.Is(context.Cause(ctx), context.Canceled) {
			return false // the caller went away: not Redis's fault
		}
		c.count(b.op, err)
		return false
	}
	if c.roundTrip != nil {
		c.roundTrip(b.op, time.Since(start))
	}
	return true
}

// err is the batch's first error that is not a missing key.
func (b *Batch) err() error {
	for _, cmd := range b.cmds {
		if err := cmd.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
	}
	return nil
}
