package remote

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/apisessions/apisessions/extproc"
	"github.com/apisessions/apisessions/extproc/protomsg"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// mode is how the streams are shaped: inline, so the server answers each message with the
// session it found (dynamic metadata), and bodies buffered whole, as Envoy sends them when
// parameters read bodies.
var mode = &filterv3.ProcessingMode{
	RequestHeaderMode:  filterv3.ProcessingMode_SEND,
	ResponseHeaderMode: filterv3.ProcessingMode_SEND,
	RequestBodyMode:    filterv3.ProcessingMode_BUFFERED,
	ResponseBodyMode:   filterv3.ProcessingMode_BUFFERED,
}

// Conn is a connection to the ext_proc service of a running server. It is safe for
// concurrent use.
type Conn struct {
	cc     *grpc.ClientConn
	client extprocv3.ExternalProcessorClient
}

// Dial prepares a plaintext gRPC connection to the server at addr (HOST:PORT); the connection
// is made on the first Send. Close releases it.
func Dial(addr string) (*Conn, error) { return DialToken(addr, "") }

// DialToken is Dial for a server that requires a token (server.grpc_token_file): every stream
// carries "authorization: Bearer <token>", as Envoy's initial_metadata does. The connection is
// plaintext, so the token crosses the network in clear: use it on loopback or a trusted link.
func DialToken(addr, token string) (*Conn, error) {
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer("Bearer "+token)))
	}
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", addr, err)
	}
	return &Conn{cc: cc, client: extprocv3.NewExternalProcessorClient(cc)}, nil
}

// bearer is the token metadata of every call.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{extproc.TokenMetadataKey: string(b)}, nil
}

// RequireTransportSecurity is false: the ext_proc link may be plaintext h2c.
func (bearer) RequireTransportSecurity() bool { return false }

// Close closes the connection.
func (c *Conn) Close() error { return c.cc.Close() }

// Send plays x as one ext_proc stream and returns the session, part and key the server named
// in its answers (the stream asks for the dynamic metadata, extproc.AnswerMetadataKey, so the
// server's inline.dynamic_metadata may be off); session is "" when no answer named one. The last answer that names a session wins: the response side may decide
// (a login that sets the session cookie).
func (c *Conn) Send(ctx context.Context, x *traffic.Exchange) (session, part string, key record.Key, err error) {
	ctx = metadata.AppendToOutgoingContext(ctx, extproc.AnswerMetadataKey, "true")
	resps, err := protomsg.Exchange(ctx, c.client, protomsg.Sequence(x, protomsg.Options{Mode: mode,
		ResponseAttributes: recordedDuration(x)}))
	if err != nil {
		return "", "", record.Key{}, err
	}
	session, part, key = named(resps)
	return session, part, key, nil
}

// recordedDuration is the response attribute request.duration that carries x's recorded
// duration, rendered as Envoy renders a duration ("0.250s"), so that the server records it
// rather than how long the replayed stream took; nil when x has no response or no end time.
func recordedDuration(x *traffic.Exchange) map[string]any {
	if !x.ResponseSeen || x.Start.IsZero() || x.End.Before(x.Start) {
		return nil
	}
	return map[string]any{"request.duration": strconv.FormatFloat(x.End.Sub(x.Start).Seconds(), 'f', -1, 64) + "s"}
}

// named reads the last session the answers named in extproc's metadata namespace.
func named(resps []*extprocv3.ProcessingResponse) (session, part string, key record.Key) {
	for _, r := range resps {
		ns := r.GetDynamicMetadata().GetFields()[extproc.MetadataNamespace].GetStructValue().GetFields()
		if s := ns["session"].GetStringValue(); s != "" {
			session, part = s, ns["part"].GetStringValue()
			src, name, _ := strings.Cut(ns["key"].GetStringValue(), ":")
			key = record.Key{Source: src, Name: name}
		}
	}
	return session, part, key
}
