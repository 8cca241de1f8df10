package ui

import (
	"context"
	"net/http"
	"testing"

	"github.com/apisessions/apisessions/explore"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/store"
)

// stack is the server's HTTP side as the binary assembles it: the store, the explore API over
// it and this UI, filled with recorded traffic through the store's sink interface.
func stack(t *testing.T, token string, reqs []*record.Request) http.Handler {
	t.Helper()
	st, err := store.Open(store.Options{Dir: t.TempDir(), NoRetentionJob: true})
	if err != nil {
		t.Fatalf("open the store: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(context.Background()); err != nil {
			t.Errorf("close the store: %v", err)
		}
	})
	batch := make([]record.Record, 0, 2*len(reqs))
	for _, r := range reqs {
		batch = append(batch, r)
	}
	for _, s := range sessionsFrom(reqs) {
		batch = append(batch, s)
	}
	if err := st.Write(context.Background(), batch); err != nil {
		t.Fatalf("write the recorded traffic to the store: %v", err)
	}
	return explore.New(explore.Options{Store: st, Token: token, UI: Handler()})
}
