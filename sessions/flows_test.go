package sessions

import (
	"slices"
	"strings"
	"testing"

	"github.com/apisessions/apisessions/config"
)

func TestFlowsBuiltin(t *testing.T) {
	t.Parallel()
	m, err := compileFlows(config.BusinessFlows{Builtin: true})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, method, path string
		want               []string
	}{
		{name: "login", method: "POST", path: "/api/v1/login", want: []string{"auth"}},
		{name: "login is case-insensitive", method: "POST", path: "/API/Auth/Login", want: []string{"auth"}},
		{name: "login page GET is not a login", method: "GET", path: "/login"},
		{name: "oauth token endpoint", method: "POST", path: "/oauth2/token", want: []string{"auth"}},
		{name: "keycloak token endpoint", method: "POST", path: "/realms/acme/protocol/openid-connect/token", want: []string{"auth"}},
		{name: "sign-up", method: "POST", path: "/api/signup", want: []string{"account_creation"}},
		{name: "create user", method: "POST", path: "/api/v2/users", want: []string{"account_creation"}},
		{name: "list users is nothing", method: "GET", path: "/api/v2/users"},
		{name: "delete user", method: "DELETE", path: "/api/v2/users/42", want: []string{"account_management"}},
		{name: "password reset", method: "POST", path: "/account/password/reset", want: []string{"account_management"}},
		{name: "profile update", method: "PATCH", path: "/me", want: []string{"account_management"}},
		{name: "admin users", method: "GET", path: "/admin/users", want: []string{"admin"}},
		{name: "admin and account management", method: "DELETE", path: "/api/admin/users/7", want: []string{"account_management", "admin"}},
		{name: "checkout", method: "POST", path: "/shop/checkout", want: []string{"billing"}},
		{name: "stripe payment intent", method: "POST", path: "/v1/payment_intents/pi_123/confirm", want: []string{"billing"}},
		{name: "otp sender", method: "POST", path: "/api/otp/send", want: []string{"sms_gateway"}},
		{name: "otp check is auth", method: "POST", path: "/api/otp/verify", want: []string{"auth"}},
		{name: "twilio messages", method: "POST", path: "/2010-04-01/Accounts/AC123/Messages.json", want: []string{"sms_gateway"}},
		{name: "openai chat", method: "POST", path: "/v1/chat/completions", want: []string{"ai_llm"}},
		{name: "azure openai", method: "POST", path: "/openai/deployments/gpt4/chat/completions", want: []string{"ai_llm"}},
		{name: "anthropic messages", method: "POST", path: "/v1/messages", want: []string{"ai_llm"}},
		{name: "gemini", method: "POST", path: "/v1beta/models/gemini-pro:generateContent", want: []string{"ai_llm"}},
		{name: "bedrock", method: "POST", path: "/model/anthropic.claude-v2/invoke", want: []string{"ai_llm"}},
		{name: "ordinary endpoint", method: "GET", path: "/api/v1/orders/12345"},
		{name: "root", method: "GET", path: "/"},
		{name: "empty", method: "GET", path: ""},
		{name: "hostile", method: "POST", path: strings.Repeat("/login", 2000) + "/x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := m.match(tc.method, "api.example.com", tc.path).list()
			if !slices.Equal(got, tc.want) {
				t.Errorf("%s: flows of %s %.60s = %v, want %v", tc.name, tc.method, tc.path, got, tc.want)
			}
		})
	}
}

func TestFlowsUserRules(t *testing.T) {
	t.Parallel()
	bf := config.BusinessFlows{Rules: []config.FlowRule{
		{Flow: "billing", Methods: []string{"POST"}, Path: "/api/v1/payments/**"},
		{Flow: "admin", Host: "admin.example.com"},
		{Flow: "ai_llm", Host: "*.llm.example.com", Path: "/**/generate"},
		{Flow: "auth", Path: "/{tenant}/session"},
		{Flow: "billing", Methods: []string{"put"}, Path: "/wallet/*"},
	}}
	tests := []struct {
		name, method, host, path string
		builtin                  bool
		want                     []string
	}{
		{name: "payment rule", method: "POST", host: "api.example.com", path: "/api/v1/payments/p1/capture", want: []string{"billing"}},
		{name: "payment rule needs POST", method: "GET", host: "api.example.com", path: "/api/v1/payments/p1"},
		{name: "user paths are case-sensitive", method: "POST", host: "api.example.com", path: "/API/v1/payments/p1"},
		{name: "host-only rule", method: "GET", host: "admin.example.com", path: "/anything", want: []string{"admin"}},
		{name: "host glob and path", method: "GET", host: "eu.llm.example.com", path: "/v2/text/generate", want: []string{"ai_llm"}},
		{name: "host glob mismatch", method: "GET", host: "llm.example.org", path: "/generate"},
		{name: "leading capture", method: "GET", host: "x", path: "/acme/session", want: []string{"auth"}},
		{name: "method written in lower case", method: "PUT", host: "x", path: "/wallet/w1", want: []string{"billing"}},
		{name: "several flows, sorted, once each", method: "POST", host: "admin.example.com", path: "/api/v1/payments/x", builtin: true, want: []string{"admin", "billing"}},
		{name: "built-in table off", method: "POST", host: "api.example.com", path: "/login"},
		{name: "built-in table on", method: "POST", host: "api.example.com", path: "/login", builtin: true, want: []string{"auth"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := bf
			b.Builtin = tc.builtin
			m, err := compileFlows(b)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.match(tc.method, tc.host, tc.path).list(); !slices.Equal(got, tc.want) {
				t.Errorf("%s: flows of %s %s%s = %v, want %v", tc.name, tc.method, tc.host, tc.path, got, tc.want)
			}
		})
	}
}

func TestFlowsRejectUnknown(t *testing.T) {
	t.Parallel()
	_, err := compileFlows(config.BusinessFlows{Rules: []config.FlowRule{{Flow: "payments", Path: "/**"}}})
	if err == nil || !strings.Contains(err.Error(), "rules[0].flow") {
		t.Errorf("unknown flow: error %v, want one naming business_flows.rules[0].flow", err)
	}
}

// TestBuiltinFlowTableDocumented keeps docs/flows.md in step with the table.
func TestBuiltinFlowTableDocumented(t *testing.T) {
	t.Parallel()
	doc := readRepoFile(t, "docs/flows.md")
	for _, b := range builtinFlows {
		if !strings.Contains(doc, "`"+b.pattern+"`") {
			t.Errorf("docs/flows.md does not list the built-in pattern %s (%s)", b.pattern, b.flow)
		}
	}
}

func TestFlowMatchDoesNotAllocate(t *testing.T) {
	m, err := compileFlows(config.BusinessFlows{Builtin: true, Rules: []config.FlowRule{{Flow: "billing", Path: "/api/v1/payments/**"}}})
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { m.match("POST", "api.example.com", "/api/v1/orders/12345/items") }); n != 0 {
		t.Errorf("matching a lower-case path allocated %v times, want 0", n)
	}
}

func BenchmarkFlows(b *testing.B) {
	rules := config.BusinessFlows{Builtin: true}
	for i := range 50 {
		rules.Rules = append(rules.Rules, config.FlowRule{Flow: "billing", Methods: []string{"POST"}, Path: "/api/v" + strings.Repeat("1", i%5+1) + "/pay" + string(rune('a'+i%26)) + "/**"})
	}
	m, err := compileFlows(rules)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct{ name, method, path string }{
		{name: "no-flow", method: "GET", path: "/api/v1/orders/12345/items"},
		{name: "builtin-hit", method: "POST", path: "/api/v1/chat/completions"},
		{name: "user-hit", method: "POST", path: "/api/v1/payz/x/y"},
		{name: "upper-case", method: "POST", path: "/API/V1/Auth/Login"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m.match(tc.method, "api.example.com", tc.path)
			}
		})
	}
}
