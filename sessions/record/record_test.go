package record

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestTimeJSON(t *testing.T) {
	t.Parallel()
	tokyo := time.FixedZone("JST", 9*3600)
	tests := []struct {
		name string
		in   time.Time
		want string
	}{
		{name: "UTC keeps milliseconds", in: time.Date(2026, 11, 22, 9, 14, 2, 117_000_000, time.UTC), want: `"2026-11-22T09:14:02.117Z"`},
		{name: "another zone is written in UTC", in: time.Date(2026, 11, 22, 18, 0, 0, 0, tokyo), want: `"2026-11-22T09:00:00.000Z"`},
		{name: "sub-millisecond digits are cut", in: time.Date(2026, 1, 2, 3, 4, 5, 999_999, time.UTC), want: `"2026-01-02T03:04:05.000Z"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := json.Marshal(At(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("%s: %s, want %s", tc.name, b, tc.want)
			}
			var back Time
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatalf("%s: the written time does not read back: %v", tc.name, err)
			}
			if !back.Equal(tc.in.Truncate(time.Millisecond)) {
				t.Errorf("%s: read back %v, want %v", tc.name, back.Time, tc.in.Truncate(time.Millisecond))
			}
		})
	}
	var bad Time
	if err := json.Unmarshal([]byte(`"yesterday"`), &bad); err == nil {
		t.Error("a time that is not RFC 3339 was accepted")
	}
}

func TestRecordsOmitAbsentValues(t *testing.T) {
	t.Parallel()
	r := &Request{Kind: KindRequest, Session: "s_00000000000000000000", Part: "2026-11-22",
		Time: At(time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)), Key: Key{Source: SourceFallback, Name: "ip"}}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, absent := range []string{"null", `"user"`, `"params"`, `"attack"`, `"partial"`, `"malicious"`} {
		if strings.Contains(string(b), absent) {
			t.Errorf("a request record without %s writes it: %s", absent, b)
		}
	}
	for _, present := range []string{`"status":0`, `"duration_ms":0`, `"kind":"request"`} {
		if !strings.Contains(string(b), present) {
			t.Errorf("the request record lacks %s: %s", present, b)
		}
	}
	var rec Record = r
	if rec.SessionID() != r.Session || rec.RecordKind() != KindRequest || r.Key.String() != "fallback:ip" {
		t.Errorf("Record methods: %q %q %q", rec.SessionID(), rec.RecordKind(), r.Key.String())
	}
}
