package protomsg

import (
	"context"
	"errors"
	"fmt"
	"io"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// ErrSpurious is returned by Exchange when an answer does not match the message it answers:
// Envoy treats such an answer as an error (and, since 1.35, fails the request unless it fails open).
var ErrSpurious = errors.New("spurious ext_proc answer")

// Continue returns the plain CONTINUE answer Envoy expects for req, or nil when req needs no
// answer (observability mode, or no request case).
func Continue(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	if req.GetObservabilityMode() {
		return nil
	}
	common := func() *extprocv3.CommonResponse { return &extprocv3.CommonResponse{} }
	switch req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
			RequestHeaders: &extprocv3.HeadersResponse{Response: common()}}}
	case *extprocv3.ProcessingRequest_RequestBody:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{
			RequestBody: &extprocv3.BodyResponse{Response: common()}}}
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{
			RequestTrailers: &extprocv3.TrailersResponse{}}}
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
			ResponseHeaders: &extprocv3.HeadersResponse{Response: common()}}}
	case *extprocv3.ProcessingRequest_ResponseBody:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{
			ResponseBody: &extprocv3.BodyResponse{Response: common()}}}
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{
			ResponseTrailers: &extprocv3.TrailersResponse{}}}
	}
	return nil
}

// Answers reports whether resp is a legal answer to req: the matching case, or an immediate
// response (which Envoy accepts at any point and which ends processing).
func Answers(req *extprocv3.ProcessingRequest, resp *extprocv3.ProcessingResponse) bool {
	switch resp.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		return true
	case *extprocv3.ProcessingResponse_RequestHeaders:
		return req.GetRequestHeaders() != nil
	case *extprocv3.ProcessingResponse_RequestBody:
		return req.GetRequestBody() != nil
	case *extprocv3.ProcessingResponse_RequestTrailers:
		return req.GetRequestTrailers() != nil
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		return req.GetResponseHeaders() != nil
	case *extprocv3.ProcessingResponse_ResponseBody:
		return req.GetResponseBody() != nil
	case *extprocv3.ProcessingResponse_ResponseTrailers:
		return req.GetResponseTrailers() != nil
	}
	return false
}

// Exchange plays msgs on one stream the way Envoy does and returns what the server sent. An
// inline message (observability_mode false) waits for its answer, which must match it; an
// observability message is sent without waiting. After the last message the stream is
// half-closed and drained, so the server's final status is returned: nil for OK. An immediate
// response ends the exchange early, as it ends processing in Envoy.
func Exchange(ctx context.Context, client extprocv3.ExternalProcessorClient, msgs []*extprocv3.ProcessingRequest) ([]*extprocv3.ProcessingResponse, error) {
	return play(ctx, client, msgs, false)
}

// Play is Exchange with Envoy's default end of stream: once the last inline message has its
// answer, the stream is reset (Envoy sends RST_STREAM and never waits for the server's
// status), so the caller does not wait for the work a server does after its last answer. A
// stream whose last message is in observability mode is half-closed and drained as in
// Exchange: a reset could overtake messages the server has not read yet. Load tools and
// benchmarks use Play; tests that check the final status use Exchange.
func Play(ctx context.Context, client extprocv3.ExternalProcessorClient, msgs []*extprocv3.ProcessingRequest) ([]*extprocv3.ProcessingResponse, error) {
	return play(ctx, client, msgs, true)
}

func play(ctx context.Context, client extprocv3.ExternalProcessorClient, msgs []*extprocv3.ProcessingRequest, reset bool) ([]*extprocv3.ProcessingResponse, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Process(ctx)
	if err != nil {
		return nil, fmt.Errorf("open ext_proc stream: %w", err)
	}
	var got []*extprocv3.ProcessingResponse
	// answered is true while every message so far was sent and, inline, answered in turn.
	answered := true
	for i, m := range msgs {
		if err := stream.Send(m); err != nil {
			if errors.Is(err, io.EOF) {
				// The server ended the stream; its status comes from Recv.
				answered = false
				break
			}
			return got, fmt.Errorf("send message %d: %w", i, err)
		}
		if m.GetObservabilityMode() {
			continue
		}
		resp, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return got, fmt.Errorf("message %d: stream ended without an answer", i)
			}
			return got, fmt.Errorf("receive answer %d: %w", i, err)
		}
		got = append(got, resp)
		if !Answers(m, resp) {
			return got, fmt.Errorf("message %d: %w", i, ErrSpurious)
		}
		if resp.GetImmediateResponse() != nil {
			answered = false
			break
		}
	}
	if reset && answered && len(msgs) > 0 && !msgs[len(msgs)-1].GetObservabilityMode() {
		// Every message was answered, so the server has read them all; the deferred cancel
		// resets the stream.
		return got, nil
	}
	if err := stream.CloseSend(); err != nil {
		return got, fmt.Errorf("close send: %w", err)
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return got, nil
		}
		if err != nil {
			return got, fmt.Errorf("end of stream: %w", err)
		}
		got = append(got, resp)
	}
}
