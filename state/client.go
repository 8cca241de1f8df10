package state

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/internal/tlsclient"
)

// Op names what a round trip is for, in metrics and logs.
type Op uint8

// The round trips a request may take part in: at most one on the request path (OpPeek), and
// after its stream's end the part workers' pipeline it shares with the requests queued with
// it (OpObserve).
const (
	OpPeek Op = iota
	OpObserve
	NumOps
)

var opNames = [NumOps]string{"peek", "observe"}

// String is the op's label value.
func (o Op) String() string { return opNames[o] }

// tripAfter is how many round trips in a row must fail before the breaker opens. One is not
// enough: under a moment of CPU starvation a single round trip may pass the timeout while Redis
// is fine, and opening then would decide a second of requests locally for nothing. A Redis
// that is gone fails every round trip and is out of the path after three.
const tripAfter = 3

// probePause is how long the breaker keeps Redis out of the path after a failure before the
// background probe tries again: long enough that a dead Redis costs almost nothing, short
// enough that a restart is noticed within a second.
const probePause = time.Second

// Settings is what the program passes besides the configuration.
type Settings struct {
	Logger *slog.Logger
	// Password is the password read from password_file or password_env ("" = none).
	Password string
	// Now is the clock of the log limit; nil means time.Now.
	Now func() time.Time
	// RoundTrip, when set, receives, for every batch that got its answers, how long its caller
	// waited for them (a wait for the round in flight included).
	RoundTrip func(Op, time.Duration)
}

// Stats are the client's counters since New.
type Stats struct {
	// Up is false while the breaker keeps Redis out of the path.
	Up bool
	// Errors counts round trips that failed (timeout, connection, error reply), by Op.
	Errors [NumOps]uint64
	// Skipped counts batches decided locally without trying Redis because the breaker was
	// open, by Op.
	Skipped [NumOps]uint64
	// Late counts answers that arrived after their caller stopped waiting (its timeout
	// passed or its request ended) and were dropped, by Op. Their callers are in Errors
	// (a timeout) or nowhere (a request that ended).
	Late [NumOps]uint64
	// Joins counts requests whose part the join path settled (no script); JoinsRefused
	// counts those it sent on to the script because the shared state named another part.
	Joins, JoinsRefused uint64
}

// Client is the connection to the shared state. Its methods are safe for concurrent use.
type Client struct {
	rdb       *redis.Client
	prefix    string
	timeout   time.Duration
	roundTrip func(Op, time.Duration)
	log       *slog.Logger
	limit     logLimit

	// down is true while the breaker is open; probing is true while a probe goroutine runs.
	down, probing atomic.Bool
	// streak counts the round trips that failed in a row since the last that did not.
	streak          atomic.Int32
	errors, skipped [NumOps]atomic.Uint64
	late            [NumOps]atomic.Uint64
	joins           atomic.Uint64
	joinsRefused    atomic.Uint64
	co              coalescer
	stop            chan struct{}
	closeOnce       sync.Once
	probes          sync.WaitGroup
}

// New builds a client for cfg, which must be enabled and validated. It does not connect;
// Start checks that Redis answers.
func New(cfg config.Redis, s Settings) (*Client, error) {
	var tc *tls.Config
	if cfg.TLS.IsSet() {
		var err error
		if tc, err = tlsclient.Config(cfg.TLS); err != nil {
			return nil, fmt.Errorf("state.redis.%w", err)
		}
	}
	timeout := cfg.Timeout.Std()
	rdb := redis.NewClient(&redis.Options{
		Addr:      cfg.Address,
		Username:  cfg.Username,
		Password:  s.Password,
		DB:        cfg.DB,
		TLSConfig: tc,
		PoolSize:  cfg.PoolSize,
		// Round trips are coalesced, so one connection carries them all; a second, for the
		// probe and the moment a round's drain starts, is dialled at once with the first so
		// that no request waits for a dial.
		MinIdleConns: min(2, cfg.PoolSize),
		// The caller's deadline bounds every wait: a retry or a long dial would hold a request.
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		DialTimeout:           max(timeout, 100*time.Millisecond),
		ReadTimeout:           timeout,
		WriteTimeout:          timeout,
		PoolTimeout:           timeout,
		// CLIENT SETINFO would cost a round trip on every new connection.
		DisableIdentity: true,
	})
	c := &Client{
		rdb:       rdb,
		prefix:    cfg.KeyPrefix,
		timeout:   timeout,
		roundTrip: s.RoundTrip,
		log:       s.Logger,
		limit:     logLimit{now: s.Now, every: time.Minute},
		stop:      make(chan struct{}),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("component", "state")
	if c.limit.now == nil {
		c.limit.now = time.Now
	}
	libraryLog.Do(func() { redis.SetLogger(debugLog{c.log}) })
	return c, nil
}

// libraryLog routes go-redis's own lines (plain text on stderr by default) to the first
// client's logger at debug level, once per process: the library's logger is global, and the
// client reports what matters itself (counted, at most once a minute).
var libraryLog sync.Once

type debugLog struct{ l *slog.Logger }

func (d debugLog) Printf(ctx context.Context, format string, v ...any) {
	if d.l.Enabled(ctx, slog.LevelDebug) {
		d.l.DebugContext(ctx, "redis client", "detail", fmt.Sprintf(format, v...))
	}
}

// Start checks that Redis answers. When it does not, the client starts down and the probe
// keeps trying: a replica starts without Redis and decides locally meanwhile.
func (c *Client) Start(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, max(c.timeout, time.Second))
	defer cancel()
	if err := c.rdb.Ping(ctx).Err(); err != nil {
		c.log.Warn("Redis unreachable at start; parts are numbered locally until it answers",
			"address", c.rdb.Options().Addr, "error", err)
		c.limit.allow()
		c.trip()
		return err
	}
	c.log.Info("Redis connected", "address", c.rdb.Options().Addr, "key_prefix", c.prefix)
	return nil
}

// Close stops the probe and closes the connections. It is idempotent.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.stop)
		c.probes.Wait()
		err = c.rdb.Close()
	})
	return err
}

// Up reports whether Redis is in the path (the breaker is closed).
func (c *Client) Up() bool { return !c.down.Load() }

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	st := Stats{Up: c.Up()}
	for i := range NumOps {
		st.Errors[i] = c.errors[i].Load()
		st.Skipped[i] = c.skipped[i].Load()
		st.Late[i] = c.late[i].Load()
	}
	st.Joins, st.JoinsRefused = c.joins.Load(), c.joinsRefused.Load()
	return st
}

// key is a key under the configured prefix.
func (c *Client) key(kind, id string) string { return c.prefix + kind + ":" + id }

// count counts a request of op whose answers are unknown because of err and logs it within
// the limit. The breaker is fed once per round trip, by failedRound.
func (c *Client) count(op Op, err error) {
	c.errors[op].Add(1)
	if n, ok := c.limit.allow(); ok {
		c.log.Warn("Redis round trip failed; deciding locally", "op", op.String(), "error", err,
			"reachable", reachedRedis(err), "failures_since_last_log", n)
	}
}

// failedRound notes a round trip that did not reach Redis or answered too late, and opens
// the breaker once tripAfter failed in a row.
func (c *Client) failedRound() {
	if c.streak.Add(1) >= tripAfter {
		c.trip()
	}
}

// ok notes a round trip that got its answers in time.
func (c *Client) ok() {
	if c.streak.Load() != 0 {
		c.streak.Store(0)
	}
}

// trip opens the breaker and starts the probe unless one runs.
func (c *Client) trip() {
	c.down.Store(true)
	if !c.probing.CompareAndSwap(false, true) {
		return
	}
	c.probes.Add(1)
	go c.probeLoop()
}

// probeLoop pings Redis every probePause until it answers, then closes the breaker.
func (c *Client) probeLoop() {
	defer c.probes.Done()
	t := time.NewTimer(probePause)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			c.probing.Store(false)
			return
		case <-t.C:
		}
		if c.probe() {
			return
		}
		t.Reset(probePause)
	}
}

// probe pings Redis once; on success it closes the breaker and ends probing.
func (c *Client) probe() bool {
	ctx, cancel := context.WithTimeout(context.Background(), max(c.timeout, 100*time.Millisecond))
	defer cancel()
	if c.rdb.Ping(ctx).Err() != nil {
		return false
	}
	c.probing.Store(false)
	c.streak.Store(0)
	c.down.Store(false)
	if n, ok := c.limit.allow(); ok {
		c.log.Info("Redis answers again; parts are numbered in the shared state", "failures_since_last_log", n)
	}
	return true
}

// logLimit lets one line through per period and counts what it held back.
type logLimit struct {
	now   func() time.Time
	every time.Duration
	mu    sync.Mutex
	last  time.Time
	held  int
}

// allow reports whether a line may be logged now, with the number of lines held back since
// the last one that was.
func (l *logLimit) allow() (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.held++
		return 0, false
	}
	n := l.held
	l.last, l.held = now, 0
	return n, true
}
