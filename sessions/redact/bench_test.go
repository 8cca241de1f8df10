package redact

import (
	"strings"
	"testing"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// BenchmarkMayHold measures the check every record with hashed parameters pays, as the
// engine calls it (path, user agent, request id and host at once) and per field: no secret
// in them, the common case.
func BenchmarkMayHold(b *testing.B) {
	secrets := []Secret{{Clear: "tok-41", Hashed: "h"}, {Clear: "user41@example.com", Hashed: "h"}, {Clear: "0f3e1c9a7b2d4e6f8a0b", Hashed: "h"}}
	fields := []struct{ name, value string }{
		{"path", "/api/v1/orders/12345"},
		{"user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"},
		{"request-id", "6f1c2d3e-0000-4000-8000-000000000001"},
		{"host", "api.example.com"},
	}
	b.Run("record", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			MayHold(secrets, fields[0].value, fields[1].value, fields[2].value, fields[3].value)
		}
	})
	for _, f := range fields {
		b.Run(f.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				MayHold(secrets, f.value)
			}
		})
	}
}

// BenchmarkAttackContent measures the content kept for a malicious request: headers, a JSON
// body of 4 KiB with a secret, and the fields hidden by name.
func BenchmarkAttackContent(b *testing.B) {
	body := `{"user":{"email":"alice@example.com","password":"hunter2-horse"},"items":[` +
		strings.Repeat(`{"sku":"A-1","qty":2,"note":"please deliver after 5pm"},`, 70) + `{"sku":"B-7"}]}`
	x := &traffic.Exchange{
		Path: "/api/v1/orders?page=3&token=abc%2Fdef",
		RequestHeaders: []traffic.Header{
			{Name: ":path", Value: "/api/v1/orders?page=3&token=abc%2Fdef"},
			{Name: ":authority", Value: "api.example.com"},
			{Name: "authorization", Value: "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"},
			{Name: "cookie", Value: "theme=dark; PHPSESSID=0123456789abcdef"},
			{Name: "user-agent", Value: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0"},
			{Name: "content-type", Value: "text/plain"},
		},
		RequestBody: []byte(body),
	}
	t := &Targets{Headers: []string{"x-api-key"}, Cookies: []string{"PHPSESSID"}, Queries: []string{"token"}, Fields: []string{"email"}, Scrub: ScrubNames(config.ScrubFields{Defaults: true})}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		r := New(fakeHash, []Secret{{Clear: "alice@example.com", Hashed: fakeHash("alice@example.com")}}, nil)
		r.Learn(x, t, 0)
		var a record.Attack
		r.AttackContent(&a, x, t, 0)
	}
}
