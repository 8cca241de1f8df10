package replay

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// Options configure Replay.
type Options struct {
	// Config is the validated configuration the engine compiles.
	Config *config.Config
	// HashKey is the engine's HMAC key (sessions.Settings.HashKey): session ids match those
	// of a server with the same key.
	HashKey []byte
	// Emitter, when not nil, also receives every record (the configured sinks, for --sinks).
	Emitter sessions.Emitter
	// Logger; nil discards.
	Logger *slog.Logger
	// Order is the order the exchanges are replayed in; "" means OrderTime.
	Order Order
}

// Order is the order recorded exchanges are replayed in.
type Order string

// The orders ParseOrder accepts.
const (
	// OrderTime replays by start time, equal times in the file's order; an exchange without
	// a time keeps its place after the one before it in the file. It is the default: captures
	// merged from several tools, or saved by a proxy in the order responses completed, list
	// entries out of time order, and a login must be replayed before the requests that use
	// its token.
	OrderTime Order = "time"
	// OrderFile replays in the file's order, for captures whose clocks are not to be trusted.
	OrderFile Order = "file"
)

// ParseOrder reads --order: "time" or "file" ("" is time).
func ParseOrder(s string) (Order, error) {
	switch Order(s) {
	case "", OrderTime:
		return OrderTime, nil
	case OrderFile:
		return OrderFile, nil
	}
	return "", fmt.Errorf("order %.32q is not time or file", s)
}

// Result is what a replay found.
type Result struct {
	// Sessions holds the last record of every part, ordered by first_seen, session, part.
	Sessions []*record.Session
	// Requests counts the exchanges replayed.
	Requests int
	// AnswersOnly is true when the parts are what a server's answers named (Remote): they know
	// requests and keys, not users or flows, which WriteResult shows as "?".
	AnswersOnly bool
}

// Replay runs exchanges, in o.Order, through a sessions engine with a clock that follows
// the replayed time, then closes the engine so every part ends, and returns the last record of
// each part.
func Replay(ctx context.Context, xs []traffic.Exchange, o Options) (*Result, error) {
	if o.Config == nil {
		return nil, errors.New("replay: no configuration")
	}
	order := replayOrder(xs, o.Order)
	clk := &clock{}
	if len(xs) > 0 {
		clk.set(xs[order[0]].Start)
	}
	col := &collector{next: o.Emitter, parts: map[string]*record.Session{}}
	eng, err := sessions.New(o.Config, sessions.Settings{
		Logger:  o.Logger,
		Emitter: col,
		Now:     clk.now,
		HashKey: o.HashKey,
	})
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	res := &Result{}
	for _, i := range order {
		if err := ctx.Err(); err != nil {
			eng.Close()
			return nil, err
		}
		x := &xs[i]
		// The sweeper reads this clock: parts end by the replayed time, not the wall clock.
		clk.set(x.Start)
		if !x.End.IsZero() {
			clk.set(x.End)
		}
		eng.Observe(x)
		res.Requests++
	}
	eng.Close()
	res.Sessions = col.sessions()
	return res, nil
}

// Ordered returns the exchanges in order o, as Replay sees them: recommend reads them so too,
// so that a value is issued before it is sent back whatever order the file lists them in.
func Ordered(xs []traffic.Exchange, o Order) []traffic.Exchange {
	out := make([]traffic.Exchange, len(xs))
	for i, j := range replayOrder(xs, o) {
		out[i] = xs[j]
	}
	return out
}

// replayOrder returns the indexes of xs in the order they are replayed.
func replayOrder(xs []traffic.Exchange, o Order) []int {
	order := make([]int, len(xs))
	for i := range order {
		order[i] = i
	}
	if o == OrderFile {
		return order
	}
	// An exchange without a time sorts as the one before it in the file, so it is neither
	// moved to the front nor separated from its neighbours.
	at := make([]time.Time, len(xs))
	var last time.Time
	for i := range xs {
		if !xs[i].Start.IsZero() {
			last = xs[i].Start
		}
		at[i] = last
	}
	slices.SortStableFunc(order, func(a, b int) int { return at[a].Compare(at[b]) })
	return order
}

// clock is a monotonic clock that follows the replayed time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	if t.After(c.t) {
		c.t = t
	}
	c.mu.Unlock()
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t.IsZero() {
		return time.Now()
	}
	return c.t
}

// collector keeps the last session record of every part and passes every record on.
type collector struct {
	next  sessions.Emitter
	mu    sync.Mutex
	parts map[string]*record.Session
}

func (c *collector) Emit(rec record.Record) {
	if s, ok := rec.(*record.Session); ok {
		c.mu.Lock()
		c.parts[s.Session+"/"+s.Part] = s
		c.mu.Unlock()
	}
	if c.next != nil {
		c.next.Emit(rec)
	}
}

func (c *collector) sessions() []*record.Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*record.Session, 0, len(c.parts))
	for _, s := range c.parts {
		out = append(out, s)
	}
	sortSessions(out)
	return out
}

func sortSessions(out []*record.Session) {
	slices.SortFunc(out, func(a, b *record.Session) int {
		if c := a.FirstSeen.Compare(b.FirstSeen.Time); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Session, b.Session); c != 0 {
			return c
		}
		return cmp.Compare(a.Part, b.Part)
	})
}

// WriteTable prints one line per part: session, part, key, user, requests, first and last seen,
// flows. Values from traffic (user, key names) are cleaned of control characters and cut, so a
// recorded value cannot drive the terminal.
func WriteTable(w io.Writer, ss []*record.Session) error { return writeTable(w, ss, false) }

// WriteResult prints res as WriteTable does; when res.AnswersOnly, users and flows, which the
// parts do not know, show as "?" rather than as none ("-").
func WriteResult(w io.Writer, res *Result) error { return writeTable(w, res.Sessions, res.AnswersOnly) }

func writeTable(w io.Writer, ss []*record.Session, unknown bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tPART\tKEY\tUSER\tREQUESTS\tFIRST SEEN\tLAST SEEN\tFLOWS")
	for _, s := range ss {
		user, flows := s.User, flowList(s.Flows)
		if user == "" {
			user = "-"
		}
		if unknown {
			user, flows = "?", "?"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n",
			clean(s.Session, 24), clean(s.Part, 16), clean(s.Key.String(), 40), clean(user, 32),
			s.Requests, s.FirstSeen.String(), s.LastSeen.String(), clean(flows, 60))
	}
	return tw.Flush()
}

func flowList(m map[string]int) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ":" + strconv.Itoa(m[k])
	}
	return strings.Join(parts, ",")
}

// Clean is clean for the command's messages: a value from elsewhere (a server's error) printed
// to a terminal.
func Clean(s string, most int) string { return clean(s, most) }

// clean keeps printable characters, replaces the rest (and tabs, which would shift columns)
// with '?', and cuts at most runes.
func clean(s string, most int) string {
	var b strings.Builder
	n := 0
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		s = s[size:]
		if n == most {
			b.WriteString("…")
			break
		}
		if r == utf8.RuneError && size <= 1 || !unicode.IsPrint(r) {
			r = '?'
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// WriteJSONL prints each part's last record as one JSON line.
func WriteJSONL(w io.Writer, ss []*record.Session) error {
	enc := json.NewEncoder(w)
	for _, s := range ss {
		if err := enc.Encode(s); err != nil {
			return err
		}
	}
	return nil
}
