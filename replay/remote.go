package replay

import (
	"context"
	"fmt"
	"strings"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/apisessions/apisessions/extproc"
	"github.com/apisessions/apisessions/extproc/protomsg"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// remoteMode is how the replayed streams are shaped: inline, so the server answers each
// message with the session it found (dynamic metadata), and bodies buffered whole, as Envoy
// sends them when parameters read bodies.
var remoteMode = &filterv3.ProcessingMode{
	RequestHeaderMode:  filterv3.ProcessingMode_SEND,
	ResponseHeaderMode: filterv3.ProcessingMode_SEND,
	RequestBodyMode:    filterv3.ProcessingMode_BUFFERED,
	ResponseBodyMode:   filterv3.ProcessingMode_BUFFERED,
}

// Remote sends each exchange, in time order and one at a time (a login must be seen before the
// requests that use its token), as an ext_proc stream to the server at addr (plaintext gRPC),
// and returns the parts the server reported in its answers' dynamic metadata (the server's
// inline.dynamic_metadata must be on). The server writes the records to its own sinks, which
// are authoritative: a part here counts the requests whose answers named it, knows no user or
// flows, and a key that only a response body reveals (a login's token) is not in the answers,
// so such a request counts under the part its headers pointed to.
func Remote(ctx context.Context, addr string, xs []traffic.Exchange) (*Result, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("replay: connect %s: %w", addr, err)
	}
	defer conn.Close()
	client := extprocv3.NewExternalProcessorClient(conn)
	return remote(ctx, client, xs)
}

func remote(ctx context.Context, client extprocv3.ExternalProcessorClient, xs []traffic.Exchange) (*Result, error) {
	order := timeOrder(xs)
	parts := map[string]*record.Session{}
	res := &Result{}
	for _, i := range order {
		x := &xs[i]
		resps, err := protomsg.Exchange(ctx, client, protomsg.Sequence(x, protomsg.Options{Mode: remoteMode}))
		if err != nil {
			return nil, fmt.Errorf("replay: request %d (%s): %w", i+1, x.RequestID, err)
		}
		res.Requests++
		session, part, key := foundSession(resps)
		if session == "" {
			continue
		}
		k := session + "/" + part
		s := parts[k]
		if s == nil {
			s = &record.Session{Kind: record.KindSession, Session: session, Part: part, Key: key,
				FirstSeen: record.At(x.Start), LastSeen: record.At(x.Start)}
			parts[k] = s
		}
		s.Requests++
		if x.Start.Before(s.FirstSeen.Time) {
			s.FirstSeen = record.At(x.Start)
		}
		if x.Start.After(s.LastSeen.Time) {
			s.LastSeen = record.At(x.Start)
		}
	}
	for _, s := range parts {
		res.Sessions = append(res.Sessions, s)
	}
	sortSessions(res.Sessions)
	return res, nil
}

// foundSession reads the last session the server named in its answers: the response side may
// decide (a login that sets the session cookie).
func foundSession(resps []*extprocv3.ProcessingResponse) (session, part string, key record.Key) {
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
