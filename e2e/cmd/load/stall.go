package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/apisessions/apisessions/extproc/protomsg"
)

// stallPerConn is how many stalled streams share one connection, as Envoy's connections
// carry at most server.max_concurrent_streams (1000 by default) each.
const stallPerConn = 1000

// stall opens n streams to addr, each sending request headers and a body chunk of chunk bytes
// (each answered, as in inline mode), then sending nothing more for d: what Envoy does in
// front of a stalled upstream, or a peer that means harm. It reports how many streams opened,
// how many the server refused, and how many it ended during d.
func stall(ctx context.Context, addr string, n, chunk int, d time.Duration, stdout io.Writer) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("target %q: %w", addr, err)
	}
	head := protomsg.RequestHeaders(protomsg.Pairs(":authority", "api.example", ":method", "POST",
		":path", "/upload", "content-type", "application/octet-stream"), false)
	body := protomsg.RequestBody(make([]byte, chunk), false)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var opened, refused, ended atomic.Int64
	var sent, done sync.WaitGroup
	start := time.Now()
	for c := 0; c*stallPerConn < n; c++ {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer cc.Close()
		client := extprocv3.NewExternalProcessorClient(cc)
		for range min(stallPerConn, n-c*stallPerConn) {
			sent.Add(1)
			done.Add(1)
			go func() {
				defer done.Done()
				s, err := openStalled(ctx, client, head, body)
				sent.Done()
				if err != nil {
					refused.Add(1)
					return
				}
				opened.Add(1)
				if _, err := s.Recv(); err != nil && ctx.Err() == nil {
					ended.Add(1) // the server ended it (its idle timeout)
				}
			}()
		}
	}
	sent.Wait()
	fmt.Fprintf(stdout, "stall: %d streams opened with a %d-byte body chunk each, %d refused, in %v; holding for %v\n",
		opened.Load(), chunk, refused.Load(), time.Since(start).Round(time.Millisecond), d)
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
	fmt.Fprintf(stdout, "stall: %d streams ended by the server while stalled\n", ended.Load())
	cancel()
	done.Wait()
	return nil
}

// openStalled sends head and body on a new stream, reading the answer to each.
func openStalled(ctx context.Context, client extprocv3.ExternalProcessorClient, head, body *extprocv3.ProcessingRequest) (grpc.BidiStreamingClient[extprocv3.ProcessingRequest, extprocv3.ProcessingResponse], error) {
	s, err := client.Process(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range []*extprocv3.ProcessingRequest{head, body} {
		if err := s.Send(m); err != nil {
			return nil, err
		}
		if _, err := s.Recv(); err != nil {
			return nil, err
		}
	}
	return s, nil
}
