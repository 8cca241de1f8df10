package replay

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/apisessions/apisessions/sessions/record"
)

// catchingUp is a store that holds one more request of part "a" at each read, and never "b"
// when hideB is set.
type catchingUp struct {
	reads int
	hideB bool
}

func (c *catchingUp) StoredPart(_ context.Context, session, part string) (*record.Session, bool, error) {
	if session == "s_b" && c.hideB {
		return nil, false, nil
	}
	c.reads++
	n := min(c.reads, 3)
	if session == "s_b" {
		n = 1
	}
	return &record.Session{Kind: record.KindSession, Session: session, Part: part, Requests: n, User: "alice",
		Flows: map[string]int{"auth": 1}, FirstSeen: record.At(time.Unix(int64(len(session)), 0))}, true, nil
}

func remoteResult() *Result {
	return &Result{AnswersOnly: true, Requests: 4, Sessions: []*record.Session{
		{Session: "s_a", Part: "p", Requests: 3}, {Session: "s_b", Part: "p", Requests: 1}}}
}

func TestStored(t *testing.T) {
	t.Parallel()
	res := remoteResult()
	missing, err := Stored(context.Background(), res, &catchingUp{}, 10*time.Second)
	if err != nil || missing != 0 || res.AnswersOnly {
		t.Fatalf("Stored = %d, %v, answers only %v", missing, err, res.AnswersOnly)
	}
	if res.Sessions[0].Requests+res.Sessions[1].Requests != 4 || res.Sessions[0].User != "alice" {
		t.Errorf("stored parts = %+v %+v; want the store's records once it holds the 4 requests", res.Sessions[0], res.Sessions[1])
	}
	var out bytes.Buffer
	if err := WriteResult(&out, res); err != nil || !strings.Contains(out.String(), "alice") || !strings.Contains(out.String(), "auth:1") {
		t.Errorf("table:\n%s", out.String())
	}

	// A part the store never holds keeps what the answers said, and the table says so.
	res = remoteResult()
	missing, err = Stored(context.Background(), res, &catchingUp{hideB: true}, 3*StoredPoll)
	if err != nil || missing != 1 || !res.AnswersOnly {
		t.Fatalf("Stored without b = %d, %v, answers only %v", missing, err, res.AnswersOnly)
	}
	out.Reset()
	if err := WriteResult(&out, res); err != nil || strings.Contains(out.String(), "alice") || !strings.Contains(out.String(), "?") {
		t.Errorf("table with a missing part:\n%s", out.String())
	}
}
