package state

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// coalescer sends the batches of concurrent requests together. At most one pipeline is in
// flight: a batch that finds none sends itself at once, from its caller's goroutine (no timer,
// no hand-off, so an idle replica pays one plain round trip); batches that arrive while one is
// in flight queue, and when it returns everything queued goes out as one pipeline, one write
// and one read, sent by a drain goroutine while the callers wait each for its own answers.
// Under load this turns N round trips, with their syscalls and wake-ups on both sides, into
// one, and Redis (one thread) reads and answers them in one go.
type coalescer struct {
	mu    sync.Mutex
	busy  bool // a pipeline is in flight or a drain runs
	queue []*call
}

// call is one batch waiting for its answers.
type call struct {
	b        *Batch
	deadline time.Time
	// state moves from waiting to answered (by the sender) or to abandoned (by a caller whose
	// deadline passed or whose request ended first); whoever moves it second knows the other.
	state atomic.Int32
	done  chan error
}

const (
	waiting int32 = iota
	answered
	abandoned
)

// exec sends b coalesced with the other batches in flight and waits at most until ctx ends.
// It returns the batch's first error that is not a missing key.
func (c *Client) exec(ctx context.Context, b *Batch) error {
	deadline, _ := ctx.Deadline()
	cl := &call{b: b, deadline: deadline, done: make(chan error, 1)}
	co := &c.co
	co.mu.Lock()
	if !co.busy {
		co.busy = true
		co.mu.Unlock()
		c.round(ctx, []*call{cl})
		c.next()
		return <-cl.done
	}
	co.queue = append(co.queue, cl)
	co.mu.Unlock()
	select {
	case err := <-cl.done:
		return err
	case <-ctx.Done():
		if cl.state.CompareAndSwap(waiting, abandoned) {
			return ctx.Err()
		}
		return <-cl.done // answered meanwhile
	}
}

// next hands what queued during a round to a drain goroutine, or marks the coalescer idle.
func (c *Client) next() {
	co := &c.co
	co.mu.Lock()
	defer co.mu.Unlock()
	if len(co.queue) == 0 {
		co.busy = false
		return
	}
	go c.drain()
}

// drain sends what is queued as one pipeline per round until the queue is empty.
func (c *Client) drain() {
	for {
		co := &c.co
		co.mu.Lock()
		calls := co.queue
		co.queue = nil
		if len(calls) == 0 {
			co.busy = false
			co.mu.Unlock()
			return
		}
		co.mu.Unlock()
		// A caller that stopped waiting while queued decided locally: its commands are not sent.
		calls = slices.DeleteFunc(calls, func(cl *call) bool { return cl.state.Load() == abandoned })
		if len(calls) > 0 {
			c.roundDetached(calls)
		}
	}
}

// roundDetached sends calls bounded by the latest of their deadlines: no caller waits past
// its own, and a caller that leaves does not cut the answers of the others.
func (c *Client) roundDetached(calls []*call) {
	var last time.Time
	for _, cl := range calls {
		if cl.deadline.After(last) {
			last = cl.deadline
		}
	}
	if last.IsZero() {
		last = time.Now().Add(c.timeout)
	}
	ctx, cancel := context.WithDeadline(context.Background(), last)
	defer cancel()
	c.round(ctx, calls)
}

// round sends the commands of calls in one pipelined round trip (and the scripts Redis did
// not know in one more), hands each call its answers and notes the outcome for the breaker.
func (c *Client) round(ctx context.Context, calls []*call) {
	var cmds []redis.Cmder
	for _, cl := range calls {
		cmds = append(cmds, cl.b.cmds...)
	}
	c.send(ctx, cmds)
	var scripts []*scriptCall
	for _, cl := range calls {
		for i := range cl.b.scripts {
			scripts = append(scripts, &cl.b.scripts[i])
		}
	}
	c.rerunUnknownScripts(ctx, scripts)
	c.noteRound(ctx, calls)
	for _, cl := range calls {
		err := cl.b.err()
		if cl.state.CompareAndSwap(waiting, answered) {
			cl.done <- err
		} else if err == nil || reachedRedis(err) {
			c.late[cl.b.op].Add(1)
		}
	}
}

// noteRound feeds the breaker once per round trip: a round that failed to reach Redis, or
// that answered after one of its callers stopped waiting, counts as one failure, whatever
// the number of batches it carried.
func (c *Client) noteRound(ctx context.Context, calls []*call) {
	if errors.Is(context.Cause(ctx), context.Canceled) {
		return // the only caller went away: says nothing of Redis
	}
	now, failed := time.Now(), false
	for _, cl := range calls {
		passed := !cl.deadline.IsZero() && cl.deadline.Before(now)
		if err := cl.b.err(); passed || cl.state.Load() == abandoned || err != nil && !reachedRedis(err) {
			failed = true
		}
	}
	if failed {
		c.failedRound()
		return
	}
	c.ok()
}

// send writes cmds in one round trip; each command keeps its own answer or error.
func (c *Client) send(ctx context.Context, cmds []redis.Cmder) {
	if len(cmds) == 1 {
		_ = c.rdb.Process(ctx, cmds[0])
		return
	}
	p := c.rdb.Pipeline()
	for _, cmd := range cmds {
		_ = p.Process(ctx, cmd)
	}
	_, _ = p.Exec(ctx)
}

// rerunUnknownScripts sends EVAL for every EVALSHA that met NOSCRIPT (after a Redis restart
// or SCRIPT FLUSH), in one more round trip, and gives each its retry's answer.
func (c *Client) rerunUnknownScripts(ctx context.Context, scripts []*scriptCall) {
	var again []redis.Cmder
	var owners []*scriptCall
	for _, sc := range scripts {
		if !isNoScript(sc.cmd.Err()) {
			continue
		}
		again = append(again, redis.NewCmd(ctx, sc.s.evalArgs("eval", sc.s.src, sc.keys, sc.args)...))
		owners = append(owners, sc)
	}
	if len(again) == 0 {
		return
	}
	c.send(ctx, again)
	for i, sc := range owners {
		retry := again[i].(*redis.Cmd)
		sc.cmd.SetVal(retry.Val())
		sc.cmd.SetErr(retry.Err())
	}
}

func isNoScript(err error) bool { return err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") }

// reachedRedis reports whether err came from a Redis that answered: an error reply, or a
// state this version cannot read.
func reachedRedis(err error) bool {
	var reply redis.Error
	return errors.As(err, &reply) || errors.Is(err, errUnreadable)
}
