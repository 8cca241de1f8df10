package traffic

import "testing"

func TestHeaderLookup(t *testing.T) {
	t.Parallel()
	x := &Exchange{
		RequestHeaders:  []Header{{Name: ":method", Value: "GET"}, {Name: "cookie", Value: "a=1"}, {Name: "cookie", Value: "b=2"}},
		ResponseHeaders: []Header{{Name: ":status", Value: "200"}},
	}
	tests := []struct {
		name   string
		get    func(string) (string, bool)
		header string
		want   string
		ok     bool
	}{
		{name: "first of repeated request headers", get: x.RequestHeader, header: "cookie", want: "a=1", ok: true},
		{name: "pseudo-header", get: x.RequestHeader, header: ":method", want: "GET", ok: true},
		{name: "absent request header", get: x.RequestHeader, header: "authorization", ok: false},
		{name: "response status", get: x.ResponseHeader, header: ":status", want: "200", ok: true},
		{name: "names are matched as given (lower case)", get: x.ResponseHeader, header: ":STATUS", ok: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := tc.get(tc.header)
			if got != tc.want || ok != tc.ok {
				t.Errorf("%s: (%q, %v), want (%q, %v)", tc.name, got, ok, tc.want, tc.ok)
			}
		})
	}
}
