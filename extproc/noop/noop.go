package noop

import (
	"context"
	"errors"
	"io"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Server answers every inline message with the matching CONTINUE answer and never answers in
// observability mode.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer
}

var _ extprocv3.ExternalProcessorServer = Server{}

// The answers are immutable and shared between streams.
var (
	requestHeaders = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
		RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{}}}}
	requestBody = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{
		RequestBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{}}}}
	requestTrailers = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{
		RequestTrailers: &extprocv3.TrailersResponse{}}}
	responseHeaders = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
		ResponseHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{}}}}
	responseBody = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{
		ResponseBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{}}}}
	responseTrailers = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{
		ResponseTrailers: &extprocv3.TrailersResponse{}}}
)

// Process implements extprocv3.ExternalProcessorServer.
func (Server) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return end(err)
		}
		var resp *extprocv3.ProcessingResponse
		switch req.GetRequest().(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			resp = requestHeaders
		case *extprocv3.ProcessingRequest_RequestBody:
			resp = requestBody
		case *extprocv3.ProcessingRequest_RequestTrailers:
			resp = requestTrailers
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			resp = responseHeaders
		case *extprocv3.ProcessingRequest_ResponseBody:
			resp = responseBody
		case *extprocv3.ProcessingRequest_ResponseTrailers:
			resp = responseTrailers
		default:
			return status.Error(codes.InvalidArgument, "processing request has no request message")
		}
		if req.GetObservabilityMode() {
			continue
		}
		if err := stream.Send(resp); err != nil {
			return end(err)
		}
	}
}

// end maps Envoy's ways of ending a stream (half-close, reset) to a normal end.
func end(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) {
		return nil
	}
	if c := status.Code(err); c == codes.Canceled || c == codes.DeadlineExceeded {
		return nil
	}
	return err
}
