package sinks_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"sync"
	"testing"

	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sinks"
)

// fakeSink records the batches it is given. With gate set, every Write first waits for a value
// on gate (or, when honourCtx is set, for ctx to end); started receives the batch size as each
// Write begins. errFor decides the result of a batch.
type fakeSink struct {
	gate      chan struct{}
	honourCtx bool
	started   chan int
	wrote     chan int // receives the batch size after a successful Write
	errFor    func(batch []record.Record) error
	panicWith any

	mu      sync.Mutex
	batches [][]record.Record
	closes  int
	writes  int
}

func (f *fakeSink) Write(ctx context.Context, batch []record.Record) error {
	if f.started != nil {
		f.started <- len(batch)
	}
	if f.gate != nil {
		if f.honourCtx {
			select {
			case <-f.gate:
			case <-ctx.Done():
				return ctx.Err()
			}
		} else {
			<-f.gate
		}
	}
	if f.panicWith != nil {
		panic(f.panicWith)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	if f.closes > 0 {
		return sinks.ErrClosed
	}
	if f.errFor != nil {
		if err := f.errFor(batch); err != nil {
			return err
		}
	}
	f.batches = append(f.batches, append([]record.Record(nil), batch...))
	if f.wrote != nil {
		f.wrote <- len(batch)
	}
	return nil
}

func (f *fakeSink) Close(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closes++
	return nil
}

// sizes returns the length of every batch written so far.
func (f *fakeSink) sizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int
	for _, b := range f.batches {
		out = append(out, len(b))
	}
	return out
}

// ids returns the request ids of every record written so far, in order.
func (f *fakeSink) ids() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, b := range f.batches {
		for _, r := range b {
			out = append(out, r.(*record.Request).RequestID)
		}
	}
	return out
}

func (f *fakeSink) closeCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closes
}

var _ sinks.Sink = (*fakeSink)(nil)

// requests builds n request records with ids "0" … "n-1".
func requests(n int) []record.Record {
	out := make([]record.Record, n)
	for i := range out {
		out[i] = &record.Request{Kind: record.KindRequest, Session: "s_00000000000000000000", RequestID: strconv.Itoa(i)}
	}
	return out
}

func idStrings(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strconv.Itoa(i)
	}
	return out
}

// logBuffer collects JSON log lines from any goroutine.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// lines returns the decoded log lines whose message is msg.
func (b *logBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(b.buf.Bytes()), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// checkBalance asserts that every accepted record is accounted for once the pipeline is shut
// down: delivered, failed or dropped (dropped may also hold records never accepted).
func checkBalance(t *testing.T, st sinks.OutputStats) {
	t.Helper()
	if st.Queued != 0 {
		t.Errorf("output %s still has %d records queued after shutdown", st.Name, st.Queued)
	}
	if st.Delivered+st.Failed > st.Accepted {
		t.Errorf("output %s delivered %d and failed %d but accepted only %d", st.Name, st.Delivered, st.Failed, st.Accepted)
	}
}

// drops is a DropCounts with n records dropped for reason r.
func drops(r sinks.DropReason, n uint64) sinks.DropCounts {
	var d sinks.DropCounts
	d[r] = n
	return d
}
