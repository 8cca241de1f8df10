package extproc

import (
	"context"
	"io"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// ServeEncoded serves one stream whose messages arrive encoded, read as NewGRPCServer's handler
// reads them (one copy of each message, then decode), and drops the answers: the server's own
// work per exchange without a transport.
func ServeEncoded(s *Server, msgs [][]byte) error {
	return s.serve(context.Background(), &encodedTransport{msgs: msgs})
}

type encodedTransport struct {
	msgs [][]byte
	next int
}

func (t *encodedTransport) recv(m *message) error {
	if t.next == len(t.msgs) {
		return io.EOF
	}
	t.next++
	return m.decode(append([]byte(nil), t.msgs[t.next-1]...))
}

func (t *encodedTransport) send(*extprocv3.ProcessingResponse) error { return nil }
