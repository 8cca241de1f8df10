package extproc

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// TokenMetadataKey is the gRPC metadata key that carries the shared token, as
// "Bearer <token>". Envoy sends it through the ext_proc filter's grpc_service.initial_metadata.
const TokenMetadataKey = "authorization"

// healthPrefix is the method prefix of the health service, which answers without a token:
// probes (kubelet's grpc probe, grpc_health_probe) cannot send one, and it tells nothing but
// SERVING or NOT_SERVING.
var healthPrefix = "/" + healthpb.Health_ServiceDesc.ServiceName + "/"

// authLogInterval spaces the warnings about refused calls: a misconfigured Envoy opens one
// stream per request, and the counter already says how many.
const authLogInterval = time.Minute

// tokenAuth checks the shared token of every call but health. It compares SHA-256 digests in
// constant time, so neither the token's bytes nor its length leak through timing.
type tokenAuth struct {
	want    [sha256.Size]byte
	srv     *Server
	lastLog atomic.Int64 // Unix nanoseconds of the last warning; 0 = none yet
	missed  atomic.Uint64
}

func newTokenAuth(srv *Server, token string) *tokenAuth {
	return &tokenAuth{want: sha256.Sum256([]byte(token)), srv: srv}
}

func (a *tokenAuth) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := a.check(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return handler(srv, ss)
}

func (a *tokenAuth) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := a.check(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// check returns nil for a health call or a call that carries the token, else an
// Unauthenticated status that tells the operator what to fix (never the token).
func (a *tokenAuth) check(ctx context.Context, method string) error {
	if strings.HasPrefix(method, healthPrefix) {
		return nil
	}
	// ValueFromIncomingContext copies only this key's values, not the whole metadata.
	for _, v := range metadata.ValueFromIncomingContext(ctx, TokenMetadataKey) {
		scheme, tok, ok := strings.Cut(v, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			continue
		}
		got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		if subtle.ConstantTimeCompare(got[:], a.want[:]) == 1 {
			return nil
		}
	}
	a.srv.stats.authRejected.Add(1)
	a.warn(ctx, method)
	return status.Error(codes.Unauthenticated, "a valid token is required: send gRPC metadata \"authorization: Bearer <the token in server.grpc_token_file>\" (Envoy: grpc_service.initial_metadata, which apisessions envoy-config writes)")
}

// warn logs a refused call at most once per authLogInterval, with how many were refused since
// the previous line.
func (a *tokenAuth) warn(ctx context.Context, method string) {
	a.missed.Add(1)
	now := time.Now().UnixNano()
	last := a.lastLog.Load()
	if last != 0 && now-last < int64(authLogInterval) || !a.lastLog.CompareAndSwap(last, now) {
		return
	}
	n := a.missed.Swap(0)
	addr := "unknown"
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr = p.Addr.String()
	}
	a.srv.settings.Load().log.LogAttrs(ctx, slog.LevelWarn, "grpc call refused: missing or wrong token",
		slog.String("method", method), slog.String("peer", addr), slog.Uint64("refused", n),
		slog.String("fix", "give Envoy the token of server.grpc_token_file (apisessions envoy-config)"))
}
