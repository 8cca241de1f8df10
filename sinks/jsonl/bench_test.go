package jsonl

import (
	"context"
	"io"
	"strconv"
	"testing"

	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sinks"
)

// BenchmarkJSONL measures encoding and writing one batch of the default size; the bytes per
// second are those of the lines written.
func BenchmarkJSONL(b *testing.B) {
	for _, kind := range []string{"kind set", "kind empty (copied)"} {
		b.Run(kind, func(b *testing.B) {
			batch := make([]record.Record, 500)
			for i := range batch {
				r := sampleRequest()
				r.RequestID = "req-" + strconv.Itoa(i)
				if kind == "kind set" {
					r.Kind = record.KindRequest
				}
				batch[i] = r
			}
			var counted countingWriter
			s, err := New(Config{Path: StdoutPath}, sinks.Settings{Stdout: &counted})
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Write(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
			s.out = io.Discard
			b.SetBytes(counted.n)
			b.ReportAllocs()
			ctx := context.Background()
			for b.Loop() {
				if err := s.Write(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}
