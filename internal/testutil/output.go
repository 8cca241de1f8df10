package testutil

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// WaitTimeout bounds every wait for a line.
const WaitTimeout = 30 * time.Second

// Output is an io.Writer safe to read while a server writes to it.
type Output struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

// NewOutput returns an empty Output.
func NewOutput() *Output { return &Output{changed: make(chan struct{}, 1)} }

// Write appends p and wakes a waiter.
func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, err := o.buf.Write(p)
	select {
	case o.changed <- struct{}{}:
	default:
	}
	return n, err
}

// String returns everything written so far.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// Lines decodes every complete line written so far as a JSON object; it fails the test on a
// complete line that is not one. A last line still being written is left for later.
func (o *Output) Lines(t testing.TB) []map[string]any {
	t.Helper()
	lines, err := JSONLines(o.String())
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

// WaitFor waits until a line satisfies ok and returns it; what names it in the failure.
func (o *Output) WaitFor(t testing.TB, what string, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(WaitTimeout)
	for {
		for _, m := range o.Lines(t) {
			if ok(m) {
				return m
			}
		}
		select {
		case <-o.changed:
		case <-deadline:
			t.Fatalf("no line with %s within %s; output so far:\n%s", what, WaitTimeout, o.String())
			return nil
		}
	}
}

// WaitMsg waits for the JSON log line whose msg is msg.
func (o *Output) WaitMsg(t testing.TB, msg string) map[string]any {
	t.Helper()
	return o.WaitFor(t, fmt.Sprintf("msg %q", msg), func(m map[string]any) bool { return m["msg"] == msg })
}

// JSONLines decodes the complete lines of text (those ending in a newline) as JSON objects;
// a torn last line is ignored, a complete line that is not a JSON object is an error.
func JSONLines(text string) ([]map[string]any, error) {
	if i := strings.LastIndexByte(text, '\n'); i >= 0 {
		text = text[:i+1]
	} else {
		return nil, nil
	}
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 8<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return out, fmt.Errorf("a line is not a JSON object (%v): %q", err, sc.Text())
		}
		out = append(out, m)
	}
	return out, sc.Err()
}
