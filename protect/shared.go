package protect

import (
	"context"
	"log/slog"
	"time"

	"github.com/apisessions/apisessions/protect/manual"
	"github.com/apisessions/apisessions/sessions"
)

// Take is one take of a token from a shared rate-limit bucket: the bucket (rule, subject —
// "session:<id>", "user:<user>" or "ip:<address>" — and, per route, route) and its refill; OK
// and Left come back.
type Take struct {
	Rule, Subject, Route string
	PerSecond            float64
	Burst                float64
	OK                   bool
	Left                 float64
}

// Shared is the protection state replicas share (implemented by *state.Protection).
type Shared interface {
	// Decide sends, in one round trip, the read of session's part state (when readPart) and
	// the takes; ok is false when the answers are unknown (Redis down or slow).
	Decide(ctx context.Context, session string, readPart bool, takes []Take) (st sessions.PartState, found, ok bool)
	// PutBlock and DeleteBlock change a block, append the audit entry and tell every replica.
	PutBlock(ctx context.Context, b manual.Block, e manual.AuditEntry) error
	DeleteBlock(ctx context.Context, kind, id string, e manual.AuditEntry) error
	// Audit reads the audit log of a session or user; Blocks every block; Block one block.
	Audit(ctx context.Context, kind, id string) ([]manual.AuditEntry, error)
	Blocks(ctx context.Context) ([]manual.Block, error)
	Block(ctx context.Context, kind, id string) (b manual.Block, found bool, err error)
	// WatchBlocks calls changed for every change of a block until ctx ends.
	WatchBlocks(ctx context.Context, changed func(kind, id string))
}

// reloadEvery is how often a replica reads every shared block again, catching changes whose
// message it missed (a subscription cut and made again).
const reloadEvery = 30 * time.Second

// Share makes the engine keep its rate-limit buckets and manual blocks in sh, shared by the
// replicas, until ctx ends: the blocks are loaded now, followed as other replicas change them,
// and read again every 30 seconds. Call it once, before serving.
func (e *Engine) Share(ctx context.Context, sh Shared, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e.shared = sh
	if sw, ok := sh.(SharedWindows); ok {
		e.sharedWin = sw
		e.startOutcomes(ctx, sw, log)
	}
	e.reloadBlocks(ctx, log)
	go sh.WatchBlocks(ctx, func(kind, id string) {
		b, found, err := sh.Block(ctx, kind, id)
		switch {
		case err != nil:
			// The periodic reload catches it.
		case found:
			_ = e.blocks.Set(b, e.now())
		default:
			e.blocks.Remove(kind, id)
		}
	})
	go func() {
		t := time.NewTicker(reloadEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				e.reloadBlocks(ctx, log)
			}
		}
	}()
}

func (e *Engine) reloadBlocks(ctx context.Context, log *slog.Logger) {
	bs, err := e.shared.Blocks(ctx)
	if err != nil {
		// The local table keeps deciding (fail open on what it holds); the state client
		// counts and logs Redis's failures.
		log.Debug("shared blocks not read", "error", err.Error())
		return
	}
	e.blocks.Replace(bs, e.now())
}
