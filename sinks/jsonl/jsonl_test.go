package jsonl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sinks"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func sampleRequest() *record.Request {
	return &record.Request{
		// Kind left empty on purpose: the sink must still write "request".
		Session:       "s_3f9c0a51b2d47e8816aa",
		Part:          "2026-11-22",
		RequestID:     "0b7a1c2e-req",
		Time:          record.At(time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC)),
		Method:        "POST",
		Scheme:        "https",
		Host:          "shop.example.com",
		Path:          "/api/v1/login",
		Route:         "/api/v1/login",
		Status:        200,
		DurationMS:    12.5,
		RequestBytes:  42,
		ResponseBytes: 100,
		ClientIP:      "203.0.113.7",
		UserAgent:     "curl/8.5.0",
		Key:           record.Key{Source: record.SourceParam, Name: "login_token"},
		User:          "alice",
		Flows:         []string{"auth"},
		Params:        map[string]string{"login_token": "hmac:00112233445566778899aabbccddeeff", "username": "alice"},
	}
}

func sampleSession() *record.Session {
	return &record.Session{
		Kind:       record.KindSession,
		Session:    "s_3f9c0a51b2d47e8816aa",
		Part:       "2026-11-22",
		FirstSeen:  record.At(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)),
		LastSeen:   record.At(time.Date(2026, 11, 22, 10, 5, 0, 999000000, time.FixedZone("CET", 3600))),
		Requests:   3,
		Key:        record.Key{Source: record.SourceFallback, Name: "ip+user_agent"},
		IPs:        []string{"203.0.113.7"},
		UserAgents: []string{"curl/8.5.0"},
		Methods:    map[string]int{"POST": 1, "GET": 2},
		Statuses:   map[string]int{"200": 3},
		Flows:      map[string]int{"auth": 1},
		BytesIn:    10,
		BytesOut:   20,
		Final:      true,
		EndReason:  record.EndIdle,
	}
}

func newStdout(t *testing.T, w io.Writer) *Sink {
	t.Helper()
	s, err := New(Config{Path: StdoutPath}, sinks.Settings{Stdout: w})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func TestGoldenLines(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	s := newStdout(t, &out)
	req, sess := sampleRequest(), sampleSession()
	wrongKind := sampleRequest()
	wrongKind.Kind = record.KindSession
	if err := s.Write(context.Background(), []record.Record{req, sess, wrongKind}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if req.Kind != "" || wrongKind.Kind != record.KindSession {
		t.Errorf("Write changed the records' Kind fields (%q, %q); records are values", req.Kind, wrongKind.Kind)
	}
	golden := filepath.Join("testdata", "records.jsonl")
	if *update {
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if got := out.String(); got != string(want) {
		t.Errorf("lines differ from %s:\ngot:\n%s\nwant:\n%s", golden, got, want)
	}
	for i, l := range lines(t, out.Bytes()) {
		wantKind := []string{record.KindRequest, record.KindSession, record.KindRequest}[i]
		if l["kind"] != wantKind {
			t.Errorf("line %d has kind %v, want %q", i, l["kind"], wantKind)
		}
	}
}

func TestHostileValues(t *testing.T) {
	t.Parallel()
	values := []struct {
		name  string
		value string
		// want is the value read back from the line.
		want string
	}{
		{name: "invalid UTF-8", value: "a\xff\xfeb\xc3", want: "a\ufffd\ufffdb\ufffd"},
		{name: "newlines and carriage returns", value: "line1\nline2\r\nline3", want: "line1\nline2\r\nline3"},
		{name: "JavaScript line separators", value: "x\u2028y\u2029z", want: "x\u2028y\u2029z"},
		{name: "control bytes and NUL", value: "\x00\x01\x1b[31m\x7f", want: "\x00\x01\x1b[31m\x7f"},
		{name: "quotes, backslashes and markup", value: `"}\"<script>&`, want: `"}\"<script>&`},
	}
	for _, tc := range values {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			s := newStdout(t, &out)
			req := sampleRequest()
			req.UserAgent = tc.value
			req.Params = map[string]string{tc.value: tc.value}
			sess := sampleSession()
			sess.UserAgents = []string{tc.value}
			if err := s.Write(context.Background(), []record.Record{req, sess}); err != nil {
				t.Fatalf("Write: %v", err)
			}
			if !utf8.Valid(out.Bytes()) {
				t.Errorf("output is not valid UTF-8: %q", out.Bytes())
			}
			if n := bytes.Count(out.Bytes(), []byte("\n")); n != 2 {
				t.Fatalf("2 records gave %d newlines, want 2 (a raw newline leaked): %q", n, out.Bytes())
			}
			if bytes.ContainsAny(out.Bytes(), "\r\u2028\u2029") {
				t.Errorf("output carries a raw line break: %q", out.Bytes())
			}
			ls := lines(t, out.Bytes())
			if got := ls[0]["user_agent"]; got != tc.want {
				t.Errorf("request user_agent read back as %q, want %q", got, tc.want)
			}
			if got := ls[0]["params"].(map[string]any)[tc.want]; got != tc.want {
				t.Errorf("request params read back as %v, want %q -> %q", ls[0]["params"], tc.want, tc.want)
			}
			if got := ls[1]["user_agents"].([]any)[0]; got != tc.want {
				t.Errorf("session user_agents read back as %q, want %q", got, tc.want)
			}
		})
	}
}

// TestLinesMatchEncoder checks that each line is byte for byte what a json.Encoder writes for
// the record with its kind fixed (HTML-escaped, newline-terminated), so lines stay what they
// were when the sink encoded records with one.
func TestLinesMatchEncoder(t *testing.T) {
	t.Parallel()
	hostile := "<a href=\"x\">&</a>\x00\x1f\x7f\b\f\t\xff\u2028\u2029é"
	req := sampleRequest()
	wrongKind := sampleRequest()
	wrongKind.Kind = "<session>"
	odd := sampleRequest()
	odd.Kind = record.KindRequest
	odd.UserAgent, odd.Path = hostile, hostile
	odd.DurationMS = 1e-7
	odd.Flows, odd.Params = []string{}, map[string]string{hostile: hostile, "a": "", "": "b"}
	odd.Malicious = true
	odd.Attack = &record.Attack{Source: "body", Types: []string{"xss"}, Headers: map[string]string{"x": hostile}, Body: hostile, BodyTruncated: true}
	sess := sampleSession()
	sess.UserAgents = []string{hostile, ""}
	sess.Methods = map[string]int{}
	sess.Flows = map[string]int{hostile: 1, "Z": 2, "a": 3}
	batch := []record.Record{req, wrongKind, odd, sess, &record.Session{}}

	var want bytes.Buffer
	enc := json.NewEncoder(&want)
	for _, rec := range batch {
		v, err := sinks.WithKind(rec)
		if err != nil {
			t.Fatal(err)
		}
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	s := newStdout(t, &out)
	if err := s.Write(context.Background(), batch); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if got := out.String(); got != want.String() {
		t.Errorf("lines differ from json.Encoder's:\ngot:\n%s\nwant:\n%s", got, want.String())
	}
}

// lines decodes every line of b, failing the test on a line that is not one JSON object.
func lines(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for i, l := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		if len(l) == 0 && len(b) == 0 {
			break
		}
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("line %d %q is not a JSON object: %v", i, l, err)
		}
		out = append(out, m)
	}
	return out
}

// numbered returns n request records whose request ids are prefix0 … prefixN-1.
func numbered(prefix string, n int) []record.Record {
	out := make([]record.Record, n)
	for i := range out {
		r := sampleRequest()
		r.RequestID = prefix + strconv.Itoa(i)
		out[i] = r
	}
	return out
}

// fileIDs returns the request ids in a file, failing on a line that is not a JSON record.
func fileIDs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Errorf("%s does not end with a newline", filepath.Base(path))
	}
	var ids []string
	for _, l := range lines(t, b) {
		ids = append(ids, l["request_id"].(string))
	}
	return ids
}

func lineLen(t *testing.T) int64 {
	t.Helper()
	var out bytes.Buffer
	if err := newStdout(t, &out).Write(context.Background(), numbered("r", 1)); err != nil {
		t.Fatal(err)
	}
	return int64(out.Len())
}

func TestRotation(t *testing.T) {
	t.Parallel()
	line := lineLen(t) // every numbered record below r10 has this length
	tests := []struct {
		name       string
		maxBackups int
		// perFile is how many lines fit under the limit.
		perFile int
		// batches are the batch sizes written, 10 records in all.
		batches []int
		// want lists the ids in path, path.1, path.2, …
		want [][]string
	}{
		{
			name: "two backups, one record per write", maxBackups: 2, perFile: 3,
			batches: []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
			want:    [][]string{{"r9"}, {"r6", "r7", "r8"}, {"r3", "r4", "r5"}},
		},
		{
			name: "two backups, one batch crossing several files", maxBackups: 2, perFile: 3,
			batches: []int{10},
			want:    [][]string{{"r9"}, {"r6", "r7", "r8"}, {"r3", "r4", "r5"}},
		},
		{
			name: "five backups keep everything", maxBackups: 5, perFile: 4,
			batches: []int{3, 3, 4},
			want:    [][]string{{"r8", "r9"}, {"r4", "r5", "r6", "r7"}, {"r0", "r1", "r2", "r3"}},
		},
		{
			name: "no backups start the file over", maxBackups: 0, perFile: 4,
			batches: []int{2, 5, 3},
			want:    [][]string{{"r8", "r9"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "logs", "records.jsonl")
			s, err := New(Config{Path: path, MaxSizeMB: 1, MaxBackups: tc.maxBackups}, sinks.Settings{})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			// Room for perFile lines, not one more.
			s.maxBytes = line*int64(tc.perFile) + line/2
			recs := numbered("r", 10)
			for _, n := range tc.batches {
				if err := s.Write(context.Background(), recs[:n]); err != nil {
					t.Fatalf("Write: %v", err)
				}
				recs = recs[n:]
			}
			if err := s.Close(context.Background()); err != nil {
				t.Fatalf("Close: %v", err)
			}
			for i, want := range tc.want {
				name := path
				if i > 0 {
					name = path + "." + strconv.Itoa(i)
				}
				if got := fileIDs(t, name); !slices.Equal(got, want) {
					t.Errorf("%s holds %v, want %v", filepath.Base(name), got, want)
				}
				if st, err := os.Stat(name); err == nil && st.Size() > s.maxBytes {
					t.Errorf("%s is %d bytes, over the %d limit", filepath.Base(name), st.Size(), s.maxBytes)
				}
			}
			if _, err := os.Stat(path + "." + strconv.Itoa(len(tc.want))); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("backup %d exists (err %v), want only %d backups", len(tc.want), err, len(tc.want)-1)
			}
			if st, err := os.Stat(filepath.Dir(path)); err != nil || st.Mode().Perm() != dirMode {
				t.Errorf("directory mode = %v (err %v), want %v", st.Mode().Perm(), err, os.FileMode(dirMode))
			}
			if st, err := os.Stat(path); err != nil || st.Mode().Perm() != fileMode {
				t.Errorf("file mode = %v (err %v), want %v", st.Mode().Perm(), err, os.FileMode(fileMode))
			}
		})
	}
}

func TestReopen(t *testing.T) {
	t.Parallel()
	line := lineLen(t)
	path := filepath.Join(t.TempDir(), "records.jsonl")
	cfg := Config{Path: path, MaxSizeMB: 1, MaxBackups: 3}
	open := func() *Sink {
		s, err := New(cfg, sinks.Settings{})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		s.maxBytes = 3*line + line/2
		return s
	}
	write := func(s *Sink, recs []record.Record) {
		if err := s.Write(context.Background(), recs); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	// A restarted sink appends to the file it finds and counts its bytes towards the limit.
	first := open()
	write(first, numbered("a", 2))
	if err := first.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	second := open()
	write(second, numbered("b", 2)) // a0 a1 b0 fill the file, b1 rotates it
	backup := path + ".1"
	if got, want := fileIDs(t, backup), []string{"a0", "a1", "b0"}; !slices.Equal(got, want) {
		t.Errorf("after the first rotation %s holds %v, want %v", filepath.Base(backup), got, want)
	}
	// Writes after the rotation go to the reopened file only.
	write(second, numbered("c", 2))
	if got, want := fileIDs(t, path), []string{"b1", "c0", "c1"}; !slices.Equal(got, want) {
		t.Errorf("the reopened file holds %v, want %v", got, want)
	}
	if got, want := fileIDs(t, backup), []string{"a0", "a1", "b0"}; !slices.Equal(got, want) {
		t.Errorf("the backup changed after the rotation: %v, want %v", got, want)
	}
	if err := second.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestOversizedLineGetsItsOwnFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "records.jsonl")
	s, err := New(Config{Path: path, MaxSizeMB: 1, MaxBackups: 3}, sinks.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	s.maxBytes = 2 * lineLen(t)
	big := sampleRequest()
	big.RequestID = "big"
	big.UserAgent = strings.Repeat("x", int(s.maxBytes)*3)
	recs := append(numbered("r", 1), big)
	recs = append(recs, numbered("s", 1)...)
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]string{path + ".2": {"r0"}, path + ".1": {"big"}, path: {"s0"}} {
		if got := fileIDs(t, name); !slices.Equal(got, want) {
			t.Errorf("%s holds %v, want %v", filepath.Base(name), got, want)
		}
	}
}

func TestRotationFailureKeepsWriting(t *testing.T) {
	t.Parallel()
	line := lineLen(t)
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "records.jsonl")
		// A non-empty directory where the backup should go makes the rotation fail.
		obstacle := path + ".1"
		if err := os.MkdirAll(filepath.Join(obstacle, "in-the-way"), 0o750); err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		s, err := New(Config{Path: path, MaxSizeMB: 1, MaxBackups: 1},
			sinks.Settings{Logger: newLogger(&logs)})
		if err != nil {
			t.Fatal(err)
		}
		s.maxBytes = line
		if err := s.Write(context.Background(), numbered("r", 3)); err != nil {
			t.Fatalf("Write = %v, want the records kept in the current file", err)
		}
		if got, want := fileIDs(t, path), []string{"r0", "r1", "r2"}; !slices.Equal(got, want) {
			t.Errorf("file holds %v, want %v", got, want)
		}
		if n := strings.Count(logs.String(), "rotation failed"); n != 1 {
			t.Errorf("%d warnings about the failed rotation, want 1 until the retry delay passes: %s", n, logs.String())
		}
		// Once the problem is gone and the delay has passed, the next line rotates.
		if err := os.RemoveAll(obstacle); err != nil {
			t.Fatal(err)
		}
		time.Sleep(rotateRetry)
		if err := s.Write(context.Background(), numbered("s", 1)); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got, want := fileIDs(t, obstacle), []string{"r0", "r1", "r2"}; !slices.Equal(got, want) {
			t.Errorf("backup after the retry holds %v, want %v", got, want)
		}
		if got, want := fileIDs(t, path), []string{"s0"}; !slices.Equal(got, want) {
			t.Errorf("file after the retry holds %v, want %v", got, want)
		}
	})
}

// failingWriter takes okBytes bytes, then fails once in the middle of a write; after that it
// takes everything.
type failingWriter struct {
	bytes.Buffer
	okBytes int
	failed  bool
	closed  bool
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if !w.failed && w.Len()+len(p) > w.okBytes {
		w.failed = true
		n, _ := w.Buffer.Write(p[:w.okBytes-w.Len()])
		return n, errors.New("broken pipe")
	}
	return w.Buffer.Write(p)
}

func (w *failingWriter) Close() error { w.closed = true; return nil }

func TestWriteErrors(t *testing.T) {
	t.Parallel()
	t.Run("a failing writer fails what it did not take and the next line starts fresh", func(t *testing.T) {
		t.Parallel()
		line := lineLen(t)
		for _, tc := range []struct {
			name     string
			okBytes  int
			wantErr  func(error) bool
			wantKept []string // records written whole before the failure
		}{
			{name: "nothing taken", okBytes: 10, wantErr: func(err error) bool {
				_, partial := errors.AsType[*sinks.PartialError](err)
				return err != nil && !partial
			}},
			{name: "one line taken", okBytes: int(line) + 10, wantKept: []string{"r0"}, wantErr: func(err error) bool {
				pe, ok := errors.AsType[*sinks.PartialError](err)
				return ok && pe.Failed == 2
			}},
		} {
			w := &failingWriter{okBytes: tc.okBytes}
			s := newStdout(t, w)
			err := s.Write(context.Background(), numbered("r", 3))
			if !tc.wantErr(err) || sinks.IsPermanent(err) {
				t.Errorf("%s: Write = %v, want a retryable error for what was not written", tc.name, err)
			}
			if err := s.Write(context.Background(), numbered("s", 2)); err != nil {
				t.Fatalf("%s: second Write: %v", tc.name, err)
			}
			got := strings.Split(strings.TrimSuffix(w.String(), "\n"), "\n")
			want := append(slices.Clone(tc.wantKept), "(torn)", "s0", "s1")
			if len(got) != len(want) {
				t.Fatalf("%s: output %q has %d lines, want %v", tc.name, w.String(), len(got), want)
			}
			for i, l := range got {
				var rec struct {
					RequestID string `json:"request_id"`
				}
				if want[i] == "(torn)" {
					if json.Valid([]byte(l)) {
						t.Errorf("%s: line %d %q should be the torn fragment", tc.name, i, l)
					}
					continue
				}
				if err := json.Unmarshal([]byte(l), &rec); err != nil || rec.RequestID != want[i] {
					t.Errorf("%s: line %d = %q, want the record %s", tc.name, i, l, want[i])
				}
			}
		}
	})
	t.Run("records that cannot be encoded are skipped as permanent failures", func(t *testing.T) {
		t.Parallel()
		var out bytes.Buffer
		s := newStdout(t, &out)
		bad := sampleRequest()
		bad.DurationMS = math.NaN()
		var nilReq *record.Request
		recs := append(numbered("r", 1), bad, nilReq, nil)
		recs = append(recs, numbered("s", 1)...)
		err := s.Write(context.Background(), recs)
		pe, ok := errors.AsType[*sinks.PartialError](err)
		if !ok || pe.Failed != 3 || !sinks.IsPermanent(err) {
			t.Fatalf("Write = %v, want a permanent partial error with 3 failed", err)
		}
		var ids []string
		for _, l := range lines(t, out.Bytes()) {
			ids = append(ids, l["request_id"].(string))
		}
		if want := []string{"r0", "s0"}; !slices.Equal(ids, want) {
			t.Errorf("written %v, want %v", ids, want)
		}
	})
	t.Run("a cancelled context writes nothing", func(t *testing.T) {
		t.Parallel()
		var out bytes.Buffer
		s := newStdout(t, &out)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := s.Write(ctx, numbered("r", 2)); !errors.Is(err, context.Canceled) || out.Len() != 0 {
			t.Errorf("Write = %v with %d bytes out, want context.Canceled and nothing written", err, out.Len())
		}
	})
}

func TestClose(t *testing.T) {
	t.Parallel()
	t.Run("stdout stays open", func(t *testing.T) {
		t.Parallel()
		w := &failingWriter{okBytes: math.MaxInt}
		s := newStdout(t, w)
		if err := s.Write(context.Background(), numbered("r", 1)); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := s.Close(context.Background()); err != nil {
				t.Fatalf("Close: %v", err)
			}
		}
		if w.closed {
			t.Error("Close closed standard output")
		}
		if err := s.Write(context.Background(), numbered("r", 1)); !errors.Is(err, sinks.ErrClosed) || !sinks.IsPermanent(err) {
			t.Errorf("Write after Close = %v, want the permanent ErrClosed", err)
		}
	})
	t.Run("file is closed and complete", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "records.jsonl")
		s, err := New(Config{Path: path}, sinks.Settings{})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Write(context.Background(), numbered("r", 2)); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := fileIDs(t, path); !slices.Equal(got, []string{"r0", "r1"}) {
			t.Errorf("file holds %v, want [r0 r1]", got)
		}
	})
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		s    sinks.Settings
		want string
	}{
		{name: "empty path", cfg: Config{}, want: "path is empty"},
		{name: "negative size", cfg: Config{Path: "-", MaxSizeMB: -1}, s: sinks.Settings{Stdout: io.Discard}, want: "max_size_mb is -1"},
		{name: "negative backups", cfg: Config{Path: "-", MaxBackups: -2}, s: sinks.Settings{Stdout: io.Discard}, want: "max_backups is -2"},
		{name: "stdout without a writer", cfg: Config{Path: "-"}, want: "standard output"},
		{name: "directory under a file", cfg: Config{Path: filepath.Join(file, "x", "records.jsonl")}, want: "create directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sk, err := Factory.Create(config.Sink{Options: &tc.cfg}, tc.s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Create = %v, want an error mentioning %q", err, tc.want)
			}
			if sk != nil {
				t.Errorf("Create returned a sink %v alongside its error", sk)
			}
		})
	}
	if Factory.Type != Type {
		t.Errorf("Factory.Type = %q, want %q", Factory.Type, Type)
	}
}

// tearingFile writes only the first half of a write to the real file and fails, once.
type tearingFile struct {
	f      *os.File
	failed bool
}

func (w *tearingFile) Write(p []byte) (int, error) {
	if w.failed {
		return w.f.Write(p)
	}
	w.failed = true
	n, _ := w.f.Write(p[:len(p)/2])
	return n, errors.New("no space left on device")
}

func TestFailedFileWriteIsCutBack(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "records.jsonl")
	s, err := New(Config{Path: path}, sinks.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(context.Background(), numbered("a", 1)); err != nil {
		t.Fatal(err)
	}
	s.out = &tearingFile{f: s.file}
	err = s.Write(context.Background(), numbered("r", 3)) // r0 lands whole, r1 is torn
	if pe, ok := errors.AsType[*sinks.PartialError](err); !ok || pe.Failed != 2 {
		t.Fatalf("Write = %v, want a partial error with 2 failed", err)
	}
	if err := s.Write(context.Background(), numbered("s", 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := fileIDs(t, path), []string{"a0", "r0", "s0"}; !slices.Equal(got, want) {
		t.Errorf("file holds %v, want %v with the torn line cut away", got, want)
	}
}

// TestSpecialFilesAreNeverRotated writes past the size limit into a FIFO and checks that the
// sink never renames, replaces or truncates it: a path like /dev/null or a pipe a collector
// reads must stay what it is.
func TestSpecialFilesAreNeverRotated(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "records.fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("cannot make a FIFO here: %v", err)
	}
	// The reader opens first, without waiting for a writer, so the data the sink writes stays in
	// the pipe until it is read after the sink has closed (then the read ends at EOF).
	r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatalf("open the FIFO for reading: %v", err)
	}
	defer r.Close()
	s, err := New(Config{Path: path, MaxSizeMB: 1, MaxBackups: 2}, sinks.Settings{})
	if err != nil {
		t.Fatalf("New on a FIFO: %v", err)
	}
	if !s.special || s.maxBytes != 0 {
		t.Fatalf("a FIFO is not treated as a special file (special %v, maxBytes %d)", s.special, s.maxBytes)
	}
	s.maxBytes = 1 // as if the limit were tiny: it must still never rotate
	for range 5 {
		if err := s.Write(context.Background(), numbered("r", 10)); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read the FIFO: %v", err)
	}
	if n := bytes.Count(got, []byte{'\n'}); n != 50 {
		t.Errorf("the reader got %d lines, want 50", n)
	}
	if st, err := os.Lstat(path); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("the FIFO was replaced: %v %v", st, err)
	}
	if _, err := os.Stat(path + ".1"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a backup of the FIFO was made: %v", err)
	}
}

func TestDevNullIsASpecialFile(t *testing.T) {
	t.Parallel()
	s, err := New(Config{Path: os.DevNull, MaxSizeMB: 1, MaxBackups: 5}, sinks.Settings{})
	if err != nil {
		t.Fatalf("New on %s: %v", os.DevNull, err)
	}
	defer s.Close(context.Background())
	if !s.special || s.maxBytes != 0 {
		t.Errorf("%s is not treated as a special file (special %v, maxBytes %d)", os.DevNull, s.special, s.maxBytes)
	}
}
