package testutil

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestJWT(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		token string
		enc   *base64.Encoding
	}{
		{name: "base64url without padding", token: JWT(`{"sub":"u?>"}`), enc: base64.RawURLEncoding},
		{name: "standard alphabet with padding", token: JWTEncoded(`{"sub":"u?>"}`, base64.StdEncoding), enc: base64.StdEncoding},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			parts := strings.Split(tc.token, ".")
			if len(parts) != 3 {
				t.Fatalf("%q has %d parts; want header, payload and signature", tc.token, len(parts))
			}
			header, err := base64.RawURLEncoding.DecodeString(parts[0])
			if err != nil || string(header) != `{"alg":"HS256","typ":"JWT"}` {
				t.Errorf("header %q (%v); want the HS256 header", header, err)
			}
			claims, err := tc.enc.DecodeString(parts[1])
			if err != nil || string(claims) != `{"sub":"u?>"}` {
				t.Errorf("payload %q (%v); want the claims as given", claims, err)
			}
		})
	}
}
