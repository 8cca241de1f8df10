// Command load drives an ext_proc server with the Envoy-shaped streams of the end-to-end
// harness (protomsg.Sequence played by protomsg.Exchange, as Envoy plays them) and prints
// requests per second and latency percentiles per exchange.
//
//	go run ./e2e/cmd/load --target 127.0.0.1:50051 --concurrency 64 --duration 10s --bodies
//	go run ./e2e/cmd/load --self --concurrency 64,256 --duration 10s --bodies
//
// --self starts apisessions (in-process, on loopback) and a no-op ext_proc server and runs the
// same load against both in one run, in alternating rounds, printing the ratio of their
// throughput. With --separate each server runs in a process of its own, as deployed next to
// Envoy, and the run also reports each server's CPU time per exchange and the whole machine's:
//
//	go run ./e2e/cmd/load --self --separate --concurrency 64,256 --duration 24s --rounds 8
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/apisessions/apisessions/cmd/apisessions/app"
	"github.com/apisessions/apisessions/extproc/noop"
	"github.com/apisessions/apisessions/extproc/protomsg"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// loadConfig is the configuration --self runs apisessions with: four grouping keys (one in a
// JSON body), six context parameters and the JA3 fallback. Records go to /dev/null, so the
// sink's encoding is measured but no disk.
const loadConfig = `
parameters:
  - {name: session_cookie, in: request.cookie, key: session_id, group: true, hashed: true}
  - {name: api_key, in: request.header, key: x-api-key, group: true, hashed: true}
  - {name: query_token, in: request.query, key: token, group: true, hashed: true}
  - {name: body_token, in: request.body, path: $.token, group: true, hashed: true}
  - {name: username, in: request.header, key: authorization, decode: jwt, path: $.details.username, type: user}
  - {name: role, in: request.header, key: authorization, decode: jwt, path: $.role, type: role}
  - {name: email, in: request.body, path: $.email, hashed: true}
  - {name: product_id, in: response.body, path: $.product_id}
  - {name: tenant, in: request.header, key: x-tenant}
  - {name: order_id, in: request.path, path: "/api/orders/{id}"}
sessions:
  fallback: [ip, user_agent, ja3]
sinks:
  - {type: jsonl, path: /dev/null}
`

// rulesConfig is what --rules adds to loadConfig: 20 protection rules of every kind, none of
// which stops the tool's traffic. Thirteen block and tag rules on conditions its requests do
// not meet (routes, methods and roles, users, address ranges, flows, attack verdicts, key
// kinds, JA3, JA4, risk), six rules over past requests that keep their windows (a sequence, a requires, an
// enumeration, a count of requests by address under its threshold, credential stuffing and
// password spraying, whose login route the tool never calls), and a rate limit whose bucket
// never empties: every rule is tried and every fact is read.
const rulesConfig = `
protection:
  login: {routes: [/login], username: email}
  rules:
    - {name: seq, action: block, sequence: {steps: [{routes: ["/api/items/{id}"]}, {routes: [/checkout]}], within: 5m}}
    - {name: req, action: tag, match: {routes: [/checkout]}, requires: {step: {routes: [/cart]}, within: 30m}}
    - {name: enum, action: block, match: {routes: ["/api/items/{id}"]}, enumeration: {more_than: 100, within: 1m}}
    - {name: cnt, action: block, count: {of: requests, more_than: 300, within: 1s, by: ip}}
    - {name: stuffing, action: block, count: {of: distinct_usernames, more_than: 5, within: 10m}}
    - {name: spraying, action: block, count: {of: distinct_sessions, more_than: 5, within: 10m}}
    - {name: admin, action: block, match: {routes: ["/admin/{id}"]}}
    - {name: guest-delete, action: block, match: {methods: [DELETE], roles: [guest]}}
    - {name: users, action: block, match: {users: [mallory, eve]}}
    - {name: ranges, action: block, match: {client_ips: [203.0.113.0/24, "2001:db8::/32"]}}
    - {name: admin-flow, action: block, match: {flows: [admin], methods: [POST]}}
    - {name: malicious, action: block, match: {malicious: true}}
    - {name: fallback-login, action: block, match: {keys: [fallback], routes: [/login]}}
    - {name: ja3, action: block, match: {ja3: [e7d705a3286e19ea42f587b344ee6865]}}
    - {name: ja4, action: block, match: {ja4: [t13d1516h2_8daaf6152771_b0da82dd1658]}}
    - {name: sqli, action: block, match: {attack_types: [sqli]}}
    - {name: risky, action: block, match: {risk_at_least: 90}}
    - {name: admin-2, action: block, match: {routes: ["/admin/{id}/keys"]}}
    - {name: tag-ranges, action: tag, match: {client_ips: [198.18.0.0/15]}}
    - {name: limit, action: rate_limit, rate_limit: {rate: 1000000000/s}}
`

// poolSize is how many distinct exchanges are prebuilt; workers cycle through them.
const poolSize = 4096

func main() {
	if code, ok := child(os.Args[1:]); ok {
		os.Exit(code)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// childEnv, in the environment of a process --separate starts from the tool's own executable
// (which may be a test binary), says which server it is: "apisessions" runs `apisessions`
// with the process's arguments, "noop" the tool with them (--noop-listen).
const childEnv = "APISESSIONS_LOAD_CHILD"

// child runs the process as the server --separate started it as, if it did.
func child(args []string) (int, bool) {
	switch os.Getenv(childEnv) {
	case "apisessions":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return app.Run(ctx, args, os.Stdout, os.Stderr), true
	case "noop":
		return run(args, os.Stdout, os.Stderr), true
	}
	return 0, false
}

type options struct {
	target        string
	self          bool
	separate      bool
	concurrency   []int
	duration      time.Duration
	bodies        bool
	observability bool
	config        string
	rules         bool
	cpuProfile    string
	rounds        int
	noopListen    string
	stall         int
	stallBody     int
	serverPID     int
}

func run(args []string, stdout, stderr io.Writer) int {
	o, code := parseFlags(args, stderr)
	if code >= 0 {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.noopListen != "" {
		return serveNoop(ctx, o.noopListen, stdout, stderr)
	}
	if o.stall > 0 {
		if err := stall(ctx, o.target, o.stall, o.stallBody, o.duration, stdout); err != nil {
			fmt.Fprintln(stderr, "load:", err)
			return 1
		}
		return 0
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "load:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "load:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	seqs := pool(o)
	fmt.Fprintf(stdout, "mode=%s bodies=%v duration=%v exchanges=%d distinct\n", modeName(o.observability), o.bodies, o.duration, len(seqs))
	fmt.Fprintf(stdout, "%-12s %5s %10s %9s %9s %9s %9s %7s\n", "target", "conc", "req/s", "p50", "p90", "p99", "max", "errors")
	var err error
	if o.self {
		err = compare(ctx, o, seqs, stdout)
	} else {
		for _, c := range o.concurrency {
			var (
				r      result
				before time.Duration
			)
			if o.serverPID > 0 {
				if before, err = processCPU(o.serverPID); err != nil {
					break
				}
			}
			if r, err = drive(ctx, o.target, c, o.duration, seqs); err != nil {
				break
			}
			r.finish()
			printResult(stdout, o.target, c, r)
			if o.serverPID > 0 {
				var after time.Duration
				if after, err = processCPU(o.serverPID); err != nil {
					break
				}
				if r.exchanges > 0 {
					fmt.Fprintf(stdout, "server CPU per exchange at concurrency %d: %.1fµs\n", c,
						float64((after-before).Microseconds())/float64(r.exchanges))
				}
			}
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "load:", err)
		return 1
	}
	return 0
}

// parseFlags reads and checks the command line; a code >= 0 ends the program with it.
func parseFlags(args []string, stderr io.Writer) (options, int) {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var conc string
	fs.StringVar(&o.target, "target", "", "HOST:PORT of a running ext_proc server")
	fs.BoolVar(&o.self, "self", false, "start apisessions and a no-op server in-process and compare them")
	fs.BoolVar(&o.separate, "separate", false, "with --self: start each server in a process of its own (as deployed; the load generator's garbage collector and scheduler are not theirs), and report each one's CPU time per exchange and the machine's")
	fs.StringVar(&conc, "concurrency", "64", "concurrent streams; a comma-separated list runs each")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "how long each run lasts (at most 10m)")
	fs.BoolVar(&o.bodies, "bodies", false, "send JSON request and response bodies (BUFFERED_PARTIAL inline, STREAMED in observability mode)")
	fs.BoolVar(&o.observability, "observability", false, "observability mode: no answers awaited")
	fs.StringVar(&o.config, "config", "", "with --self: apisessions configuration file (default: four grouping keys, six context parameters, JA3)")
	fs.BoolVar(&o.rules, "rules", false, "with --self and the default configuration: add 20 protection rules that do not stop the tool's traffic")
	fs.StringVar(&o.noopListen, "noop-listen", "", "only serve a no-op ext_proc server on HOST:PORT until interrupted: the baseline for --target runs against a server in its own process")
	fs.IntVar(&o.rounds, "rounds", 4, "with --self: split each run into this many alternating rounds per server (order noop, apisessions, apisessions, noop, ...), so drift in the machine's speed falls on both")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (load generator and, with --self but not --separate, both servers) to this file")
	fs.IntVar(&o.stall, "stall", 0, "with --target: open this many streams that each send request headers and one body chunk, then nothing for --duration (a flood of stalled streams)")
	fs.IntVar(&o.stallBody, "stall-body", 60<<10, "with --stall: bytes of each stream's body chunk")
	fs.IntVar(&o.serverPID, "server-pid", 0, "with --target: the server's process id on this machine, to report its CPU time per exchange (from /proc)")
	if err := fs.Parse(args); err != nil {
		return o, 2
	}
	for _, c := range strings.Split(conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 || n > 10000 {
			fmt.Fprintf(stderr, "load: --concurrency %q: use numbers from 1 to 10000\n", c)
			return o, 2
		}
		o.concurrency = append(o.concurrency, n)
	}
	switch {
	case o.duration <= 0 || o.duration > 10*time.Minute:
		fmt.Fprintln(stderr, "load: --duration must be within (0, 10m]")
		return o, 2
	case o.rounds < 1 || o.rounds > 100:
		fmt.Fprintln(stderr, "load: --rounds must be within [1, 100]")
		return o, 2
	case o.stall < 0 || o.stall > 0 && (o.target == "" || o.self) || o.stallBody < 0:
		fmt.Fprintln(stderr, "load: --stall N takes --target HOST:PORT (not --self), N and --stall-body at least 0")
		return o, 2
	case o.serverPID < 0 || o.serverPID > 0 && o.target == "":
		fmt.Fprintln(stderr, "load: --server-pid PID takes --target HOST:PORT and a process id")
		return o, 2
	case o.separate && !o.self:
		fmt.Fprintln(stderr, "load: --separate takes --self")
		return o, 2
	case o.rules && (!o.self || o.config != ""):
		fmt.Fprintln(stderr, "load: --rules adds to the default configuration of --self; add the rules to your --config file instead")
		return o, 2
	case (o.target == "") == !o.self && o.noopListen == "":
		fmt.Fprintln(stderr, "load: give exactly one of --target HOST:PORT and --self")
		return o, 2
	}
	return o, -1
}

// compare starts a no-op server and apisessions (in-process, or each in a process of its own
// with --separate) and drives both at each concurrency, printing each one's result and their
// ratio, and with --separate the CPU time each server and the whole machine spent per exchange.
func compare(ctx context.Context, o options, seqs [][]*extprocv3.ProcessingRequest, stdout io.Writer) error {
	// With --cpuprofile, every goroutine of a side carries its label (goroutines inherit the
	// labels of the one that started them), so that `go tool pprof -tagfocus side=...` splits
	// the run: the no-op server, apisessions, and the load generator against each.
	var (
		noop, api server
		err       error
	)
	pprof.Do(ctx, pprof.Labels("side", "noop"), func(ctx context.Context) {
		if o.separate {
			noop, err = startNoopProcess(ctx)
		} else {
			noop, err = startNoop()
		}
	})
	if err != nil {
		return err
	}
	defer noop.stop()
	pprof.Do(ctx, pprof.Labels("side", "apisessions"), func(ctx context.Context) {
		api, err = startAPISessions(ctx, o.config, o.rules, o.separate)
	})
	if err != nil {
		return err
	}
	defer api.stop()
	defer printStateCounters(stdout, api.httpAddr)
	for _, c := range o.concurrency {
		// Each server gets o.duration in all, in o.rounds rounds ordered ABBA: a machine that
		// speeds up or slows down during the run weighs on both alike.
		var base, got result
		var cpu [2]struct{ server, machine time.Duration } // noop, apisessions
		slice := o.duration / time.Duration(o.rounds)
		for i := range o.rounds {
			order := []bool{false, true} // apisessions?
			if i%2 == 1 {
				order = []bool{true, false}
			}
			for _, isAPI := range order {
				sv, into, side, k := noop, &base, "client-noop", 0
				if isAPI {
					sv, into, side, k = api, &got, "client-apisessions", 1
				}
				var before, after cpuTimes
				if o.separate {
					if before, err = readCPUTimes(sv.pid); err != nil {
						return err
					}
				}
				var r result
				pprof.Do(ctx, pprof.Labels("side", side), func(ctx context.Context) {
					r, err = drive(ctx, sv.grpcAddr, c, slice, seqs)
				})
				if err != nil {
					return err
				}
				if o.separate {
					if after, err = readCPUTimes(sv.pid); err != nil {
						return err
					}
					cpu[k].server += after.server - before.server
					cpu[k].machine += after.machine - before.machine
				}
				into.merge(r)
			}
		}
		base.finish()
		got.finish()
		printResult(stdout, "noop", c, base)
		printResult(stdout, "apisessions", c, got)
		fmt.Fprintf(stdout, "ratio apisessions/noop at concurrency %d: %.2f\n", c, got.rps()/base.rps())
		if o.separate {
			per := func(d time.Duration, r result) float64 {
				return float64(d.Microseconds()) / float64(max(1, r.exchanges))
			}
			fmt.Fprintf(stdout, "server CPU per exchange at concurrency %d: noop %.1fµs, apisessions %.1fµs\n",
				c, per(cpu[0].server, base), per(cpu[1].server, got))
			fmt.Fprintf(stdout, "machine CPU per exchange at concurrency %d: noop %.1fµs, apisessions %.1fµs\n",
				c, per(cpu[0].machine, base), per(cpu[1].machine, got))
		}
	}
	return nil
}

// cpuTimes is the CPU time a server process and the whole machine (every process: the load
// generator, both servers, and anything apisessions uses, such as Redis) have used.
type cpuTimes struct{ server, machine time.Duration }

func readCPUTimes(pid int) (cpuTimes, error) {
	var t cpuTimes
	var err error
	if t.server, err = processCPU(pid); err != nil {
		return t, err
	}
	t.machine, err = machineCPU()
	return t, err
}

func modeName(obs bool) string {
	if obs {
		return "observability"
	}
	return "inline"
}

type result struct {
	exchanges int
	elapsed   time.Duration
	lat       []time.Duration // sorted once finished
	errors    int64
	firstErr  error
}

func (r result) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.exchanges) / r.elapsed.Seconds()
}

// merge adds the round o to r.
func (r *result) merge(o result) {
	r.exchanges += o.exchanges
	r.elapsed += o.elapsed
	r.lat = append(r.lat, o.lat...)
	r.errors += o.errors
	if r.firstErr == nil {
		r.firstErr = o.firstErr
	}
}

// finish sorts the latencies for the percentiles.
func (r *result) finish() { slices.Sort(r.lat) }

func pct(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	i := int(float64(len(s)-1) * p)
	return s[i]
}

func printResult(w io.Writer, name string, c int, r result) {
	fmt.Fprintf(w, "%-12s %5d %10.0f %9s %9s %9s %9s %7d\n", name, c, r.rps(),
		round(pct(r.lat, .5)), round(pct(r.lat, .9)), round(pct(r.lat, .99)), round(pct(r.lat, 1)), r.errors)
	if r.firstErr != nil {
		fmt.Fprintf(w, "  first error: %v\n", r.firstErr)
	}
}

func round(d time.Duration) time.Duration {
	if d > time.Millisecond {
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// drive runs c workers for d against addr, each playing one exchange after another.
func drive(ctx context.Context, addr string, c int, d time.Duration, seqs [][]*extprocv3.ProcessingRequest) (result, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return result{}, fmt.Errorf("target %q: %w", addr, err)
	}
	// A few connections, as Envoy spreads streams over its HTTP/2 connections to a cluster.
	conns := make([]extprocv3.ExternalProcessorClient, 4)
	for i := range conns {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return result{}, err
		}
		defer cc.Close()
		conns[i] = extprocv3.NewExternalProcessorClient(cc)
	}
	// Warm up connections and caches outside the measurement.
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	for i := range conns {
		if _, err := protomsg.Exchange(wctx, conns[i], seqs[i]); err != nil {
			wcancel()
			return result{}, fmt.Errorf("warm-up exchange with %s: %w", addr, err)
		}
	}
	wcancel()

	// Cancel-only: a deadline would travel to the server and gRPC's own timer may fire before
	// the context reports it, counting the last in-flight exchanges as errors.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	timer := time.AfterFunc(d, cancel)
	defer timer.Stop()
	var (
		next     atomic.Int64
		errs     atomic.Int64
		firstErr atomic.Pointer[error]
		mu       sync.Mutex
		all      []time.Duration
		wg       sync.WaitGroup
	)
	began := time.Now()
	for w := range c {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 1024)
			client := conns[w%len(conns)]
			for rctx.Err() == nil {
				seq := seqs[int(next.Add(1))%len(seqs)]
				t0 := time.Now()
				// Play resets each inline stream after its last answer, as Envoy does, rather
				// than waiting for the server's status: Envoy never waits for the work a
				// server does after its last answer (apisessions records the exchange then).
				_, err := protomsg.Play(rctx, client, seq)
				if err != nil {
					if rctx.Err() != nil {
						break
					}
					errs.Add(1)
					firstErr.CompareAndSwap(nil, &err)
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	r := result{exchanges: len(all), elapsed: time.Since(began), lat: all, errors: errs.Load()}
	if p := firstErr.Load(); p != nil {
		r.firstErr = *p
	}
	return r, nil
}

// pool prebuilds the exchanges: 256 clients with their own tokens, addresses and
// fingerprints, so sessions, parts and caches see realistic reuse.
func pool(o options) [][]*extprocv3.ProcessingRequest {
	mode := &filterv3.ProcessingMode{}
	if o.bodies {
		bm := filterv3.ProcessingMode_BUFFERED_PARTIAL
		if o.observability {
			bm = filterv3.ProcessingMode_STREAMED
		}
		mode = &filterv3.ProcessingMode{RequestBodyMode: bm, ResponseBodyMode: bm}
	}
	enc := base64.RawURLEncoding
	out := make([][]*extprocv3.ProcessingRequest, 0, poolSize)
	start := time.Now().UTC()
	for i := range poolSize {
		user := i % 256
		claims, _ := json.Marshal(map[string]any{"sub": fmt.Sprintf("u-%d", user), "role": "customer",
			"details": map[string]any{"username": fmt.Sprintf("user-%d@example.com", user)}})
		jwt := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(claims) + ".c2ln"
		token := fmt.Sprintf("tok-%04d-%s", user, strings.Repeat("k", 24))
		hs := protomsg.Pairs(
			"user-agent", fmt.Sprintf("Mozilla/5.0 (load %d)", user%17),
			"accept", "application/json",
			"authorization", "Bearer "+jwt,
			"x-tenant", fmt.Sprintf("t-%d", user%5),
			"x-client-ja3", fmt.Sprintf("%032x", user%31),
			"x-request-id", fmt.Sprintf("load-%d", i),
		)
		x := &traffic.Exchange{
			RequestID: fmt.Sprintf("load-%d", i), Start: start, Scheme: "https", Host: "api.example.com",
			SourceAddress: fmt.Sprintf("198.51.%d.%d:4%04d", user/200, user%200+1, i%10000),
			ResponseSeen:  true, Status: 200,
			ResponseHeaders: protomsg.Pairs("content-type", "application/json", "cache-control", "no-store"),
		}
		if o.bodies {
			x.Method, x.Path = "POST", "/api/cart"
			x.RequestHeaders = append(hs, protomsg.Pairs("content-type", "application/json")...)
			x.RequestBody = []byte(fmt.Sprintf(`{"token":%q,"email":"user-%d@example.com","items":[{"sku":"p-%d","qty":%d}],"note":%q}`,
				token, user, i%100, i%4+1, strings.Repeat("n", 200)))
			x.ResponseBody = []byte(fmt.Sprintf(`{"product_id":"p-%d","cart":{"size":%d,"total":%d.50},"recommendations":["a","b","c"]}`, i%100, i%4+1, i%90))
		} else {
			x.Method, x.Path = "GET", fmt.Sprintf("/api/orders/%d?token=%s", i, token)
			x.RequestHeaders = hs
			x.ResponseHeaders = append(x.ResponseHeaders, protomsg.Pairs("content-length", "512")...)
		}
		out = append(out, protomsg.Sequence(x, protomsg.Options{Mode: mode, Observability: o.observability, ChunkSize: 4096}))
	}
	return out
}

// serveNoop serves the no-op server on addr until ctx ends.
func serveNoop(ctx context.Context, addr string, stdout, stderr io.Writer) int {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(stderr, "load:", err)
		return 1
	}
	gs := newNoopServer()
	go func() {
		<-ctx.Done()
		gs.Stop()
	}()
	fmt.Fprintf(stdout, "%s%s\n", noopReady, lis.Addr())
	if err := gs.Serve(lis); err != nil && ctx.Err() == nil {
		fmt.Fprintln(stderr, "load:", err)
		return 1
	}
	return 0
}

// newNoopServer is the baseline: a plain gRPC server with the no-op ext_proc handler.
func newNoopServer() *grpc.Server {
	gs := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(gs, noop.Server{})
	return gs
}

// server is an ext_proc server the tool started: its addresses, its process (this one unless
// --separate) and how to stop it.
type server struct {
	grpcAddr, httpAddr string
	pid                int
	stop               func()
}

func startNoop() (server, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return server{}, err
	}
	gs := newNoopServer()
	go func() { _ = gs.Serve(lis) }()
	return server{grpcAddr: lis.Addr().String(), pid: os.Getpid(), stop: gs.Stop}, nil
}

// startNoopProcess starts the no-op server in a process of its own: the tool's executable
// with --noop-listen on a free loopback port, which it prints.
func startNoopProcess(ctx context.Context) (server, error) {
	exe, err := os.Executable()
	if err != nil {
		return server{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	cmd := childCommand(ctx, exe, "noop", "--noop-listen", "127.0.0.1:0")
	cmd.Stderr = os.Stderr // why it did not start, if it does not
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return server{}, err
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return server{}, err
	}
	stop := func() {
		cancel()
		_ = cmd.Wait()
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case l := <-line:
		addr, ok := strings.CutPrefix(l, noopReady)
		if !ok {
			stop()
			return server{}, fmt.Errorf("the no-op server did not start: %q", l)
		}
		return server{grpcAddr: addr, pid: cmd.Process.Pid, stop: stop}, nil
	case <-time.After(30 * time.Second):
		stop()
		return server{}, errors.New("the no-op server was not ready within 30s")
	}
}

// noopReady starts the line --noop-listen prints once it serves, before the address.
const noopReady = "no-op ext_proc server on "

// childCommand is the tool's executable exe started as the server kind (childEnv) with args;
// the end of ctx stops it with SIGTERM, as an orchestrator does, and SIGKILL if it has not
// exited 10 s later.
func childCommand(ctx context.Context, exe, kind string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), childEnv+"="+kind)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// startTailLines is how many of apisessions' last lines a failed start reports.
const startTailLines = 8

// startAPISessions runs `apisessions serve` on loopback ports, in-process or (separate) in a
// process of its own started from the tool's executable, and waits for its ready line.
func startAPISessions(ctx context.Context, configPath string, rules, separate bool) (server, error) {
	dir, err := os.MkdirTemp("", "apisessions-load-")
	if err != nil {
		return server{}, err
	}
	if configPath == "" {
		configPath = filepath.Join(dir, "apisessions.yaml")
		cfg := loadConfig
		if rules {
			cfg += rulesConfig
		}
		if err := os.WriteFile(configPath, []byte(cfg), 0o600); err != nil {
			return server{}, err
		}
	}
	pr, pw := io.Pipe()
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan int, 1)
	args := []string{"serve", "--config", configPath, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
		"--data-dir", filepath.Join(dir, "data")}
	pid := os.Getpid()
	if separate {
		exe, err := os.Executable()
		if err != nil {
			cancel()
			_ = os.RemoveAll(dir)
			return server{}, err
		}
		cmd := childCommand(sctx, exe, "apisessions", args...)
		cmd.Stderr = pw
		if err := cmd.Start(); err != nil {
			cancel()
			_ = os.RemoveAll(dir)
			return server{}, err
		}
		pid = cmd.Process.Pid
		go func() {
			_ = cmd.Wait()
			done <- cmd.ProcessState.ExitCode()
			pw.Close()
		}()
	} else {
		go func() {
			done <- app.Run(sctx, args, io.Discard, pw)
			pw.Close()
		}()
	}
	ready := make(chan [2]string, 1)
	// tail keeps the last lines apisessions wrote before it was ready: why it exited, if it
	// does. It is read once scanned is closed.
	var tail []string
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			if sent {
				continue
			}
			if len(tail) == startTailLines {
				tail = tail[1:]
			}
			tail = append(tail, sc.Text())
			var m struct {
				Msg      string `json:"msg"`
				GRPCAddr string `json:"grpc_addr"`
				HTTPAddr string `json:"http_addr"`
			}
			if json.Unmarshal(sc.Bytes(), &m) == nil && m.Msg == "ready" {
				ready <- [2]string{m.GRPCAddr, m.HTTPAddr}
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	stop := func() {
		cancel()
		<-done
		_ = os.RemoveAll(dir)
	}
	select {
	case addrs := <-ready:
		return server{grpcAddr: addrs[0], httpAddr: addrs[1], pid: pid, stop: stop}, nil
	case code := <-done:
		cancel()
		_ = os.RemoveAll(dir)
		<-scanned
		return server{}, fmt.Errorf("apisessions exited with status %d before it was ready:\n%s", code, strings.Join(tail, "\n"))
	case <-time.After(30 * time.Second):
		stop()
		return server{}, errors.New("apisessions was not ready within 30s")
	}
}

// printStateCounters prints apisessions' shared-state counters (state.redis) after a run, so
// that a run whose requests were decided without Redis says so. Nothing without state.redis.
func printStateCounters(stdout io.Writer, httpAddr string) {
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		for _, name := range []string{"apisessions_state_up", "apisessions_state_errors_total", "apisessions_state_skipped_total", "apisessions_state_round_trip_seconds_count"} {
			if strings.HasPrefix(line, name) {
				fmt.Fprintln(stdout, line)
			}
		}
	}
}

// clockTicks is the unit of the CPU times in /proc/PID/stat (USER_HZ), 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// processCPU returns the user and system CPU time process pid has used, from /proc.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("server CPU time: %w", err)
	}
	// The command name, in parentheses, may hold spaces; fields are counted after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("server CPU time: /proc/%d/stat has an unexpected form", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("server CPU time: /proc/%d/stat has an unexpected form", pid)
	}
	// utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("server CPU time: /proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// machineCPU returns the CPU time every process of the machine has used (user, nice, system,
// interrupts), from the first line of /proc/stat.
func machineCPU() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("machine CPU time: %w", err)
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 8 || f[0] != "cpu" {
		return 0, errors.New("machine CPU time: /proc/stat has an unexpected form")
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7} { // user nice system irq softirq
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("machine CPU time: /proc/stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}
