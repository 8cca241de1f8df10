// Package sessions turns exchanges into records: it compiles a configuration into extractors
// and grouping rules, groups each request into a session (an HMAC of its grouping value) and a
// one-day part, keeps the live parts in memory and emits request and session records.
//
// It imports config and its own subpackages (extract, record, redact, traffic); it never
// imports gRPC, Envoy's protos or any sink, and it reads no file: the program hands it the hash
// key.
package sessions

import (
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/extract"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/redact"
	"github.com/apisessions/apisessions/sessions/risk"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// Emitter receives every record the engine produces. Emit must not block: the sinks pipeline
// queues the record or drops it and counts the drop.
type Emitter interface {
	Emit(rec record.Record)
}

// Settings is what the program passes to the engine besides the configuration.
type Settings struct {
	Logger  *slog.Logger
	Emitter Emitter
	// Now is the clock of the sweeper's decisions; nil means time.Now.
	Now func() time.Time
	// HashKey is the HMAC key of session ids and hashed parameters, at least MinHashKeyBytes
	// long (the program reads it from hashing.key_file, the environment or the data
	// directory). Replicas that must agree on ids share it. The engine keeps a copy.
	HashKey []byte
	// HiddenParameters are parameters that other components register (abuse signals,
	// mitigation controls): exported in params when seen, never grouping, not counted against
	// max_parameters, kept across Reload. A configured parameter of the same name wins.
	HiddenParameters []config.Parameter
	// SharedParts, when set, numbers parts in state shared by replicas (state.redis); nil
	// numbers them in this process alone.
	SharedParts SharedParts
	// SharedLinks, with SharedParts, keeps the stitching links in the shared state; without
	// it, replicas sharing parts do not stitch (each exchange is grouped by itself).
	SharedLinks SharedLinks
}

// Fallbacks for values a validated configuration always sets; they keep a hand-built
// configuration from producing an unusable engine.
const (
	defaultMaxLiveParts     = 100_000
	defaultLookupCacheMB    = 16
	defaultSnapshotInterval = time.Minute
	sweepEvery              = time.Second
)

// ErrConfig is wrapped by errors about a configuration the engine cannot compile.
var ErrConfig = errors.New("invalid sessions configuration")

// Engine groups exchanges into sessions and emits records. Its methods are safe for
// concurrent use.
type Engine struct {
	log  *slog.Logger
	emit Emitter
	now  func() time.Time
	hash *hasher
	// hashParam is hash.param, made once: a method value made per redaction would allocate.
	hashParam func(string) string
	cache     *extract.Cache
	parts     *table
	links     *linkTable
	shared    SharedParts // nil: parts numbered locally
	slinks    SharedLinks // with shared only; nil: links kept locally (or none, with shared)
	peeks     *peekReads  // with shared only
	work      *partWork   // with shared only
	snap      atomic.Pointer[snapshot]
	hidden    []config.Parameter
	routes    *routeTable

	// Counters for Stats; they never hold values, only counts.
	observed, malicious, outOfScope atomic.Int64
	// parseErrors counts what Observe's extraction could not parse; Peek reads the same
	// values again and does not count.
	parseErrors extract.ParseErrors

	reloadMu sync.Mutex // serialises Reload so table resizes apply in order
	closed   atomic.Bool
	stop     chan struct{}
	done     chan struct{}
	close    sync.Once
}

// snapshot is one compiled configuration. It is immutable once published.
type snapshot struct {
	params  []param
	builtin bool
	// stitchRotation and stitchLogin are sessions.stitch.rotation and .login.
	stitchRotation, stitchLogin bool
	fallbackParts               []string
	// fallbackKeys[mask] names the fallback key made of the parts whose bits are set.
	fallbackKeys []record.Key
	rules        partRules
	every        time.Duration
	maxLive      int
	include      []string
	exclude      []string
	ipFrom       string
	trustedHops  int
	ja3Header    string
	ja4Header    string
	maxBody      int
	needs        traffic.Needs
	// needsResponseBody is true when a parameter reads response bodies (needs.ResponseBody
	// is also true when only the built-in token fields do).
	needsResponseBody bool
	flows             *flowMatcher
	attacks           *attackRules
	// hashed are the request-side places whose values the content of a malicious request
	// carries hashed: the built-in session cookies and headers, what hashed parameters read
	// and the fields attacks.scrub_fields names.
	hashed redact.Targets
	// claimOnFailure makes the user and role of a request answered 4xx or 5xx claimed ones
	// (sessions.users_from: succeeded).
	claimOnFailure bool
}

// param is one compiled parameter.
type param struct {
	ext    *extract.Extractor
	name   string
	ident  string // "param:" + name, the identifier's name stitching keeps
	key    record.Key
	side   extract.Side
	group  bool
	body   bool // reads its side's body
	hashed bool
	hidden bool
	typ    string
}

// New compiles cfg and starts the sweeper. cfg must be validated.
func New(cfg *config.Config, s Settings) (*Engine, error) {
	return newEngine(cfg, s, true)
}

// newEngine is New; tests that drive e.sweep with their own clock leave the ticker out.
func newEngine(cfg *config.Config, s Settings, sweeper bool) (*Engine, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%w: no configuration", ErrConfig)
	}
	hidden := slices.Clone(s.HiddenParameters)
	snap, err := compile(cfg, hidden)
	if err != nil {
		return nil, err
	}
	if len(s.HashKey) < MinHashKeyBytes {
		return nil, fmt.Errorf("%w: %d bytes; use at least %d", ErrHashKey, len(s.HashKey), MinHashKeyBytes)
	}
	mb := cfg.Sessions.LookupCacheMB
	if mb <= 0 {
		mb = defaultLookupCacheMB
	}
	cache, err := extract.NewCache(int64(mb) << 20)
	if err != nil {
		return nil, fmt.Errorf("create lookup cache: %w", err)
	}
	parts, err := newTable(snap.maxLive)
	if err != nil {
		cache.Close()
		return nil, err
	}
	maxLinks := cfg.Sessions.Stitch.MaxLinks
	if maxLinks <= 0 {
		maxLinks = config.DefaultMaxLinks
	}
	var links *linkTable
	if s.SharedParts == nil || s.SharedLinks != nil {
		// With shared parts but no shared links, stitching decides from each exchange alone
		// (unlinked), so that replicas agree. With shared links, the table is where a
		// replica falls back when Redis does not answer.
		if links, err = newLinkTable(maxLinks); err != nil {
			cache.Close()
			return nil, err
		}
	}
	e := &Engine{
		log:    s.Logger,
		emit:   s.Emitter,
		now:    s.Now,
		hash:   newHasher(s.HashKey),
		cache:  cache,
		parts:  parts,
		links:  links,
		shared: s.SharedParts,
		slinks: s.SharedLinks,
		hidden: hidden,
		routes: newRouteTable(),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	e.hashParam = e.hash.param
	if e.shared != nil {
		e.peeks = newPeekReads()
		e.startPartWork()
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.log = e.log.With("component", "sessions")
	if e.emit == nil {
		e.emit = discard{}
	}
	if e.now == nil {
		e.now = time.Now
	}
	e.snap.Store(snap)
	e.log.Info("sessions engine ready", "parameters", len(snap.params),
		"flow_rules", len(cfg.BusinessFlows.Rules), "builtin_flows", cfg.BusinessFlows.Builtin,
		"attack_sources", len(cfg.Attacks.Metadata)+min(1, len(cfg.Attacks.ResponseHeader)),
		"max_live_parts", snap.maxLive, "day_boundary", snap.rules.loc.String())
	if sweeper {
		go e.sweeper()
	} else {
		close(e.done)
	}
	return e, nil
}

type discard struct{}

func (discard) Emit(record.Record) {}

// compile turns a validated configuration and the hidden parameters into a snapshot.
func compile(cfg *config.Config, hidden []config.Parameter) (*snapshot, error) {
	s := &snapshot{
		builtin:        cfg.Sessions.BuiltinKeys,
		stitchRotation: cfg.Sessions.Stitch.Rotation,
		stitchLogin:    cfg.Sessions.Stitch.Login,
		every:          cfg.Sessions.SnapshotInterval.Std(),
		maxLive:        cfg.Sessions.MaxLiveParts,
		include:        lowerAll(cfg.Traffic.Hosts.Include),
		exclude:        lowerAll(cfg.Traffic.Hosts.Exclude),
		ipFrom:         strings.ToLower(cfg.Traffic.ClientIP.From),
		trustedHops:    max(0, cfg.Traffic.ClientIP.TrustedHops),
		ja3Header:      strings.ToLower(cfg.TLS.JA3Header),
		ja4Header:      strings.ToLower(cfg.TLS.JA4Header),
		maxBody:        cfg.Traffic.MaxBodyBytes,
		rules:          partRules{idle: max(0, cfg.Sessions.IdleTimeout.Std()), risk: risk.New(cfg.Sessions.Risk), today: new(atomic.Pointer[calendarDay])},
		hashed:         redact.Targets{Headers: slices.Clone(BuiltinHeaders), Cookies: slices.Clone(BuiltinCookies)},
		// An empty value is a configuration built without the defaults: the safe choice.
		claimOnFailure: cfg.Sessions.UsersFrom != config.UsersFromAny,
	}
	if s.every <= 0 {
		s.every = defaultSnapshotInterval
	}
	if s.maxLive <= 0 {
		s.maxLive = defaultMaxLiveParts
	}
	zone := cfg.Sessions.DayBoundary
	if zone == "" {
		zone = "UTC"
	}
	loc, err := time.LoadLocation(zone)
	if err != nil {
		return nil, fmt.Errorf("%w: sessions.day_boundary %q: %w", ErrConfig, zone, err)
	}
	s.rules.loc = loc

	if err := s.compileFallback(cfg.Sessions.Fallback); err != nil {
		return nil, err
	}
	if err := s.addParams(cfg, hidden); err != nil {
		return nil, err
	}
	s.flows, err = compileFlows(cfg.BusinessFlows)
	if err != nil {
		return nil, err
	}
	s.attacks = compileAttacks(cfg.Attacks)
	s.hashed.Scrub = redact.ScrubNames(cfg.Attacks.ScrubFields)
	if s.builtin {
		// Built-in identifiers issued in JSON response bodies (WantBody asks for JSON only).
		s.needs.ResponseBody = true
	}
	if s.attacks != nil {
		// The content of a malicious request includes its body, so every request body is
		// copied (up to max_body_bytes) while attacks are configured.
		s.needs.RequestBody = true
	}
	return s, nil
}

// compileFallback checks sessions.fallback and names the fallback key of every combination of
// the parts present.
func (s *snapshot) compileFallback(parts []string) error {
	for _, f := range parts {
		switch f {
		case fallbackIP, fallbackUserAgent, fallbackJA3, fallbackJA4:
		default:
			return fmt.Errorf("%w: sessions.fallback %q: use ip, user_agent, ja3 or ja4", ErrConfig, f)
		}
		for _, g := range s.fallbackParts {
			if g == f {
				return fmt.Errorf("%w: sessions.fallback lists %q twice", ErrConfig, f)
			}
		}
		s.fallbackParts = append(s.fallbackParts, f)
	}
	s.fallbackKeys = make([]record.Key, 1<<len(s.fallbackParts))
	for mask := range s.fallbackKeys {
		var names []string
		for i, f := range s.fallbackParts {
			if mask&(1<<i) != 0 {
				names = append(names, f)
			}
		}
		s.fallbackKeys[mask] = record.Key{Source: record.SourceFallback, Name: strings.Join(names, "+")}
	}
	return nil
}

// addParams compiles the configured parameters, then the hidden ones a configured parameter
// does not already name.
func (s *snapshot) addParams(cfg *config.Config, hidden []config.Parameter) error {
	visible := 0
	for _, p := range cfg.Parameters {
		if !p.Hidden {
			visible++
		}
		if err := s.addParam(p, p.Hidden); err != nil {
			return err
		}
	}
	if cfg.MaxParameters > 0 && visible > cfg.MaxParameters {
		return fmt.Errorf("%w: %d parameters are configured but max_parameters is %d", ErrConfig, visible, cfg.MaxParameters)
	}
	for _, p := range hidden {
		if slices.ContainsFunc(s.params, func(q param) bool { return q.name == p.Name }) {
			continue
		}
		if err := s.addParam(p, true); err != nil {
			return err
		}
	}
	return nil
}

// addParam compiles one parameter. Hidden parameters never group: a component that registers
// one must not change how sessions are formed.
func (s *snapshot) addParam(p config.Parameter, hidden bool) error {
	ext, err := extract.Compile(p)
	if err != nil {
		return fmt.Errorf("%w: compile parameter %q: %w", ErrConfig, p.Name, err)
	}
	s.params = append(s.params, param{
		ext:    ext,
		name:   p.Name,
		ident:  "param:" + p.Name,
		key:    record.Key{Source: record.SourceParam, Name: p.Name},
		side:   ext.Side(),
		group:  p.Group && !hidden,
		body:   ext.NeedsBody(),
		hashed: p.Hashed,
		hidden: hidden,
		typ:    p.Type,
	})
	if p.Hashed {
		s.hashed.Add(p)
	}
	if ext.NeedsBody() {
		if ext.Side() == extract.Response {
			s.needs.ResponseBody = true
			s.needsResponseBody = true
		} else {
			s.needs.RequestBody = true
		}
	}
	return nil
}

func lowerAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ToLower(s)
	}
	return out
}

// Reload compiles cfg and swaps it in atomically; live parts are kept. On error the current
// configuration stays. The hash key and the lookup cache size are fixed at New: changing
// them needs a restart (hashing.key_file is read by the program, not here).
func (e *Engine) Reload(cfg *config.Config) error {
	if cfg == nil {
		return fmt.Errorf("%w: no configuration", ErrConfig)
	}
	snap, err := compile(cfg, e.hidden)
	if err != nil {
		return err
	}
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	old := e.snap.Load()
	if snap.maxLive != old.maxLive {
		e.parts.resize(snap.maxLive, e.emit.Emit)
	}
	e.snap.Store(snap)
	return nil
}

// InScope reports whether requests to host (an :authority, port allowed) are analysed.
func (e *Engine) InScope(host string) bool { return e.snap.Load().inScope(host) }

func (s *snapshot) inScope(host string) bool {
	if len(s.include) == 0 && len(s.exclude) == 0 {
		return true
	}
	h := lowerASCII(config.StripPort(host))
	if len(s.include) > 0 {
		in := false
		for _, p := range s.include {
			if hostMatch(p, h) {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	for _, p := range s.exclude {
		if hostMatch(p, h) {
			return false
		}
	}
	return true
}

// hostMatch is config.HostMatch for a lower-case pattern and a lower-case host without port:
// a plain comparison when the pattern has no glob characters.
func hostMatch(pattern, host string) bool {
	if !strings.ContainsAny(pattern, `*?[\`) {
		return pattern == host
	}
	ok, err := path.Match(pattern, host)
	return ok && err == nil
}

// Needs reports which bodies the current configuration reads.
func (e *Engine) Needs() traffic.Needs { return e.snap.Load().needs }

// WantBody reports whether a body of one side with content type contentType (the header's
// value, "" when there is none) is worth asking Envoy for: the configuration reads that side's
// body and the body's type is one the extractor reads (extract.ReadableContentType).
func (e *Engine) WantBody(side traffic.Side, contentType string) bool {
	s := e.snap.Load()
	if !s.needs.Body(side) || !extract.ReadableContentType(contentType) {
		return false
	}
	if side == traffic.Response && !s.needsResponseBody {
		// Only the built-in token fields read it: JSON bodies alone.
		return extract.JSONContentType(contentType)
	}
	return true
}

// MaxBodyBytes is the number of body bytes inspected per direction.
func (e *Engine) MaxBodyBytes() int { return e.snap.Load().maxBody }

// Stats are the engine's counters since New. They hold counts only.
type Stats struct {
	// Observed is the number of request records emitted.
	Observed int64
	// Malicious is the number of requests an attack verdict marked malicious.
	Malicious int64
	// OutOfScope is the number of exchanges Observe dropped because their host is out of scope.
	OutOfScope int64
	// LiveParts is the number of session parts held in memory now.
	LiveParts int
	// RouteHosts is the number of hosts with a route table of their own.
	RouteHosts int
	// RoutesCollapsed is the number of requests whose route was collapsed because its host's
	// route table was full.
	RoutesCollapsed int64
	// SharedQueued is the number of requests waiting for a part worker (shared state only);
	// SharedQueueFull counts requests whose part was decided locally because their worker's
	// queue was full; PartWorkerPanics counts batches a bug in a part worker cut short.
	SharedQueued                      int
	SharedQueueFull, PartWorkerPanics int64
	// LookupCacheHits and LookupCacheMisses count lookups of decoded JWT claims in the lookup
	// cache (sessions.lookup_cache_mb), Peek's included.
	LookupCacheHits, LookupCacheMisses uint64
	// ParseErrors counts values of recorded exchanges that could not be parsed, by source:
	// indexed by extract.ParseJSONBody and its siblings, named by extract.ParseSourceNames.
	// Such a value counts as an absent parameter.
	ParseErrors [extract.NumParseSources]uint64
	// Links is the number of entries of the link table (sessions.stitch.max_links bounds it).
	Links int
	// LinksFailOpen counts the requests stitched on the replica's own links because the
	// shared links did not answer (state.redis only).
	LinksFailOpen int64
	// LinksRotation and LinksLogin count the links made, by kind; LinksEvicted the entries
	// the bound evicted; LinksRefused the values a response issued that were not linked
	// because they already had a session of their own or were issued to another session.
	LinksRotation, LinksLogin, LinksEvicted, LinksRefused int64
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	st := Stats{
		Observed:        e.observed.Load(),
		Malicious:       e.malicious.Load(),
		OutOfScope:      e.outOfScope.Load(),
		LiveParts:       e.parts.len(),
		RouteHosts:      e.routes.hostsLen(),
		RoutesCollapsed: e.routes.collapsed.Load(),
		ParseErrors:     e.parseErrors.Counts(),
	}
	if l := e.links; l != nil {
		st.Links = l.len()
		st.LinksRotation, st.LinksLogin = l.rotations.Load(), l.logins.Load()
		st.LinksEvicted, st.LinksRefused = l.evictions.Load(), l.refused.Load()
		st.LinksFailOpen = l.failOpen.Load()
	}
	if e.work != nil {
		st.SharedQueued = e.work.queued()
		st.SharedQueueFull = e.work.full.Load()
		st.PartWorkerPanics = e.work.panics.Load()
	}
	cs := e.cache.Stats()
	st.LookupCacheHits, st.LookupCacheMisses = cs.Hits, cs.Misses
	return st
}

func (e *Engine) sweeper() {
	defer close(e.done)
	tk := time.NewTicker(sweepEvery)
	defer tk.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-tk.C:
			e.sweep(e.now())
		}
	}
}

// sweep ends parts whose day or idle time is over and snapshots parts that changed, as of now.
func (e *Engine) sweep(now time.Time) {
	s := e.snap.Load()
	e.parts.sweep(now, &s.rules, s.every, e.emit.Emit)
	if e.links != nil {
		e.links.sweepShard(now, s.rules.idle)
	}
}

// Close stops the sweeper, ends every live part with a final record (end_reason "shutdown")
// and releases the lookup cache. It is idempotent. Call it after the last Observe: a later
// Observe still emits its request record but keeps no part state.
func (e *Engine) Close() {
	e.close.Do(func() {
		e.closed.Store(true)
		if e.work != nil {
			e.work.close() // the queued requests join their parts before the parts end
		}
		close(e.stop)
		<-e.done
		e.parts.closeAll(record.EndShutdown, e.emit.Emit)
		e.cache.Close()
	})
}
