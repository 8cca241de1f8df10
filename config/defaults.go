package config

import "time"

// Default listen addresses: loopback only.
// DefaultMaxLinks is the default of sessions.stitch.max_links.
const DefaultMaxLinks = 100000

const (
	DefaultGRPCListen = "127.0.0.1:50051"
	DefaultHTTPListen = "127.0.0.1:8080"
)

// Bounds on ext_proc streams and what they hold (server.max_concurrent_streams,
// server.max_streams, server.stream_idle_timeout, traffic.body_budget_bytes).
const (
	// DefaultMaxConcurrentStreams lets one Envoy connection carry 1000 requests in flight;
	// Envoy opens another connection for more.
	DefaultMaxConcurrentStreams = 1000
	// DefaultMaxStreams bounds the streams of all connections: about 12 KiB each without
	// bodies (docs/configuration.md, "Stream bounds"), so some 120 MiB at the bound, plus what
	// the body budget lets them keep.
	DefaultMaxStreams = 10000
	// MemoryLimitMin is the smallest server.memory_limit_bytes: below it the collector would
	// run without pause.
	MemoryLimitMin = 64 << 20
	// DefaultStreamIdleTimeout is above Envoy's default route timeout (15 s, the longest an
	// upstream may take to answer) and its deferred_close_timeout (5 s).
	DefaultStreamIdleTimeout = Duration(time.Minute)
	// DefaultBodyBudgetBytes is 256 MiB: 4096 bodies of the default max_body_bytes at once.
	DefaultBodyBudgetBytes = 256 << 20
)

// Default returns the configuration used when a key is absent from the file, as the spec's
// config.md lists it. It is the one source of defaults: Parse starts from it. Every call
// returns a fresh value that the caller may modify.
func Default() *Config {
	return &Config{
		Server: Server{
			// Loopback: other machines reach the listeners only when the file says so.
			GRPCListen:           DefaultGRPCListen,
			HTTPListen:           DefaultHTTPListen,
			DataDir:              "./data",
			MaxConcurrentStreams: DefaultMaxConcurrentStreams,
			MaxStreams:           DefaultMaxStreams,
			StreamIdleTimeout:    DefaultStreamIdleTimeout,
			MaxMessageBytes:      16 << 20,
			ShutdownTimeout:      Duration(15 * time.Second),
		},
		Traffic: Traffic{
			MaxBodyBytes:    65536,
			BodyBudgetBytes: DefaultBodyBudgetBytes,
			ClientIP:        ClientIP{From: "source"},
		},
		Sessions: Sessions{
			BuiltinKeys:      true,
			Fallback:         []string{FallbackIP, FallbackUserAgent, FallbackJA3},
			DayBoundary:      "UTC",
			Retention:        Duration(168 * time.Hour),
			MaxLiveParts:     100000,
			LookupCacheMB:    32,
			SnapshotInterval: Duration(time.Minute),
			UsersFrom:        UsersFromSucceeded,
			Stitch:           Stitch{Rotation: true, Login: true, MaxLinks: DefaultMaxLinks},
			Risk:             Risk{HalfLife: DefaultRiskHalfLife, Weights: DefaultRiskWeights},
		},
		MaxParameters: 20,
		BusinessFlows: BusinessFlows{Builtin: true},
		TLS:           TLS{JA3Header: "x-client-ja3", JA4Header: "x-client-ja4"},
		Attacks:       Attacks{ScrubFields: ScrubFields{Defaults: true}},
		Inline:        Inline{SessionHeader: "x-apisessions-session"},
		Sinks:         []Sink{defaultStore()},
		State: State{Redis: Redis{
			KeyPrefix: DefaultRedisKeyPrefix,
			Timeout:   DefaultRedisTimeout,
			PoolSize:  DefaultRedisPoolSize,
		}},
		Protection: Protection{MaxBuckets: DefaultMaxBuckets, MaxBlocks: DefaultMaxBlocks, MaxWindows: DefaultMaxWindows},
	}
}

// defaultStore is the sink of a file without a sinks key, named as Normalize would name it.
func defaultStore() Sink {
	s := DefaultSink(DefaultSinkType)
	s.Name = DefaultSinkType
	return s
}

// Parts of the fallback grouping key (Sessions.Fallback).
const (
	FallbackIP        = "ip"
	FallbackUserAgent = "user_agent"
	FallbackJA3       = "ja3"
	FallbackJA4       = "ja4"
)

// FallbackParts lists the parts the fallback key may be built from.
var FallbackParts = []string{FallbackIP, FallbackUserAgent, FallbackJA3, FallbackJA4}

// Sources lists the values of Parameter.In, in the spec's order.
var Sources = []string{
	InRequestHeader, InRequestCookie, InRequestQuery, InRequestBody, InRequestPath,
	InResponseHeader, InResponseCookie, InResponseBody,
}

// Decodings lists the values of Parameter.Decode.
var Decodings = []string{DecodeJWT, DecodeJSON, DecodeBase64}
