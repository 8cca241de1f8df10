package app

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/apisessions/apisessions/explore"
	"github.com/apisessions/apisessions/internal/testutil"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/store"
)

// TestHARHandover exports every part of a replayed capture as HAR and replays each export into
// a fresh store: every part comes back as one session part with the same requests, in the same
// order, with the same methods, paths, routes, statuses, users, flows, parameters and verdicts.
func TestHARHandover(t *testing.T) {
	t.Parallel()
	for _, driver := range []string{store.DriverSQLite, store.DriverPostgres} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			src := handoverStore(t, driver)
			replayInto(t, src, "--now", demoHAR)
			dst := handoverStore(t, driver)

			orig := storedParts(t, src)
			if len(orig) < 3 {
				t.Fatalf("the capture made %d parts; want several to hand over", len(orig))
			}
			if !slices.ContainsFunc(orig, func(p storedPart) bool { return p.User != "" && len(p.Flows) > 0 }) ||
				!slices.ContainsFunc(orig, func(p storedPart) bool { return p.Malicious > 0 }) {
				t.Fatal("the capture made no part with a user and flows, or none with malicious requests: the comparison would prove little")
			}
			api := explore.New(explore.Options{Store: src.open(t), Version: "test"})
			for _, p := range orig {
				w := httptest.NewRecorder()
				api.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/v1/sessions/"+p.Session.Session+"/"+p.Part+"/session.har", nil))
				if w.Code != http.StatusOK {
					t.Fatalf("export %s/%s: %d %s", p.Session.Session, p.Part, w.Code, w.Body.String())
				}
				file := filepath.Join(t.TempDir(), p.Session.Session+".har")
				if err := os.WriteFile(file, w.Body.Bytes(), 0o600); err != nil {
					t.Fatal(err)
				}
				replayInto(t, dst, file)
			}
			back := storedParts(t, dst)
			if len(back) != len(orig) {
				t.Fatalf("%d parts came back; want %d", len(back), len(orig))
			}
			// Session ids differ (the store keeps no grouping value); everything else is equal.
			for _, o := range orig {
				i := slices.IndexFunc(back, func(b storedPart) bool { return b.requests[0] == o.requests[0] })
				if i < 0 {
					t.Errorf("part %s/%s did not come back:\n%s", o.Session.Session, o.Part, o.requests[0])
					continue
				}
				b := back[i]
				if b.Part != o.Part || b.Requests != o.Requests || b.User != o.User || b.Role != o.Role || b.Key != o.Key ||
					fmt.Sprint(b.Flows) != fmt.Sprint(o.Flows) || fmt.Sprint(b.Statuses) != fmt.Sprint(o.Statuses) || b.Malicious != o.Malicious {
					t.Errorf("part %s/%s came back as\n%+v\nwant\n%+v", o.Session.Session, o.Part, *b.Session, *o.Session)
				}
				if !slices.Equal(b.requests, o.requests) {
					t.Errorf("part %s/%s's requests came back as\n%s\nwant\n%s", o.Session.Session, o.Part,
						strings.Join(b.requests, "\n"), strings.Join(o.requests, "\n"))
				}
			}
		})
	}
}

// handoverDB is a store the replay command writes to through its configuration.
type handoverDB struct {
	driver, dir, dsn, config string
}

func handoverStore(t *testing.T, driver string) *handoverDB {
	t.Helper()
	db := &handoverDB{driver: driver, dir: t.TempDir()}
	example, err := os.ReadFile("../../../examples/apisessions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(example)
	if driver == store.DriverPostgres {
		db.dsn = testutil.PostgresDB(t)
		cfg = strings.Replace(cfg, "  - type: store\n", "  - type: store\n    driver: postgres\n    dsn: "+db.dsn+"\n", 1)
	}
	db.config = filepath.Join(db.dir, "apisessions.yaml")
	if err := os.WriteFile(db.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return db
}

func (db *handoverDB) open(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(store.Options{Driver: db.driver, Dir: db.dir, DSN: db.dsn, NoRetentionJob: true, Readers: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func replayInto(t *testing.T, db *handoverDB, args ...string) {
	t.Helper()
	var out, errb bytes.Buffer
	argv := append([]string{"replay", "--config", db.config, "--data-dir", db.dir, "--sinks"}, args...)
	if code := Run(context.Background(), argv, &out, &errb); code != exitOK {
		t.Fatalf("replay %v: exit %d\n%s", args, code, errb.String())
	}
}

// storedPart is a part's record and a line per request of what a handover keeps.
type storedPart struct {
	*record.Session
	requests []string
}

func storedParts(t *testing.T, db *handoverDB) []storedPart {
	t.Helper()
	s := db.open(t)
	ctx := context.Background()
	page, err := s.List(ctx, store.ListQuery{Limit: store.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	var out []storedPart
	for _, p := range page.Sessions {
		sp := storedPart{Session: p}
		err := s.EachRequest(ctx, p.Session, p.Part, store.Filter{}, func(r *record.Request) error {
			sp.requests = append(sp.requests, fmt.Sprintf("%s %s %s %s %s %d %v %s/%s %s %v %v %d/%d %v",
				r.Time, r.RequestID, r.Method, r.Host, r.Path, r.Status, r.DurationMS, r.User, r.Role, r.Route, r.Flows,
				r.Params, r.RequestBytes, r.ResponseBytes, r.Malicious))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, sp)
	}
	return out
}
