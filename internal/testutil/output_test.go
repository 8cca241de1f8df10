package testutil

import (
	"testing"
)

func TestJSONLines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		text    string
		want    int
		wantErr bool
	}{
		{name: "empty", text: "", want: 0},
		{name: "one torn line is left for later", text: `{"a":1`, want: 0},
		{name: "complete lines and a torn one", text: "{\"a\":1}\n{\"b\":2}\n{\"c\"", want: 2},
		{name: "a complete line that is not JSON", text: "{\"a\":1}\nnot json\n", want: 1, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := JSONLines(tc.text)
			if (err != nil) != tc.wantErr || len(got) != tc.want {
				t.Errorf("%s: %d lines, error %v; want %d lines, error %v", tc.name, len(got), err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestWaitFor(t *testing.T) {
	t.Parallel()
	o := NewOutput()
	go func() {
		o.Write([]byte("{\"msg\":\"starting\"}\n"))
		o.Write([]byte("{\"msg\":\"ready\",\"addr\":\"127.0.0.1:1\"}\n"))
	}()
	if got := o.WaitMsg(t, "ready"); got["addr"] != "127.0.0.1:1" {
		t.Errorf("WaitMsg returned %v", got)
	}
}
