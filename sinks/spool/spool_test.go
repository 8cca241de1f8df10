package spool_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/apisessions/apisessions/sinks/spool"
)

func entries(from, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte("entry-" + strconv.Itoa(from+i))
	}
	return out
}

func open(t *testing.T, dir string, opts spool.Options) (*spool.Spool, spool.Recovered) {
	t.Helper()
	opts.NoSync = true
	s, rec, err := spool.Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, rec
}

// drain reads and commits everything, returning the payloads in order.
func drain(t *testing.T, s *spool.Spool, batch int) []string {
	t.Helper()
	var got []string
	for {
		es, next, _, err := s.Read(batch, 1<<20)
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		if len(es) == 0 {
			return got
		}
		for _, e := range es {
			got = append(got, string(e))
		}
		if err := s.Commit(next[len(next)-1]); err != nil {
			t.Fatalf("Commit: %v", err)
		}
	}
}

func names(from, n int) []string {
	var out []string
	for _, e := range entries(from, n) {
		out = append(out, string(e))
	}
	return out
}

func TestFIFOAcrossSegmentsAndRestarts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		segment int64
		batch   int
	}{
		{name: "one segment", segment: 1 << 20, batch: 7},
		{name: "many small segments", segment: 100, batch: 3},
		{name: "batches of one", segment: 64, batch: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			opts := spool.Options{MaxBytes: 1 << 20, SegmentBytes: tc.segment}
			s, _ := open(t, dir, opts)
			if _, err := s.Append(entries(0, 50)); err != nil {
				t.Fatalf("Append: %v", err)
			}
			if s.Len() != 50 {
				t.Errorf("Len after 50 appends = %d", s.Len())
			}
			// Deliver the first 20, hand out 5 more without committing, then restart.
			got := []string{}
			for len(got) < 20 {
				es, next, _, err := s.Read(min(tc.batch, 20-len(got)), 1<<20)
				if err != nil || len(es) == 0 {
					t.Fatalf("Read = %d entries, %v", len(es), err)
				}
				for _, e := range es {
					got = append(got, string(e))
				}
				if err := s.Commit(next[len(next)-1]); err != nil {
					t.Fatal(err)
				}
			}
			if _, _, _, err := s.Read(5, 1<<20); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s2, rec := open(t, dir, opts)
			if rec.Entries != 30 || rec.CorruptEntries != 0 {
				t.Errorf("reopened spool reports %+v, want 30 entries waiting and no damage", rec)
			}
			if _, err := s2.Append(entries(50, 10)); err != nil {
				t.Fatal(err)
			}
			got = append(got, drain(t, s2, tc.batch)...)
			if want := names(0, 60); !slices.Equal(got, want) {
				t.Errorf("entries came out as %v, want %v", got, want)
			}
			if s2.Len() != 0 {
				t.Errorf("Len after draining = %d, want 0", s2.Len())
			}
			segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
			if len(segs) != 0 {
				t.Errorf("a drained spool keeps segment files %v, want none", segs)
			}
		})
	}
}

func TestRewindHandsOutAgain(t *testing.T) {
	t.Parallel()
	s, _ := open(t, t.TempDir(), spool.Options{MaxBytes: 1 << 20})
	s.Append(entries(0, 4))
	first, _, _, _ := s.Read(2, 1<<20)
	if nothing, _, _, _ := s.Read(10, 1<<20); len(nothing) != 2 || string(nothing[0]) != "entry-2" {
		t.Errorf("second Read = %q, want the 2 entries after the first Read", nothing)
	}
	s.Rewind()
	again, _, _, _ := s.Read(2, 1<<20)
	if !slices.EqualFunc(first, again, bytes.Equal) {
		t.Errorf("after Rewind Read = %q, want %q again", again, first)
	}
}

func TestFullSpoolDropsOldestSegments(t *testing.T) {
	t.Parallel()
	// Each entry is 8 bytes of header and 8 of payload: 4 per 64-byte segment, 16 fit in 256.
	s, _ := open(t, t.TempDir(), spool.Options{MaxBytes: 256, SegmentBytes: 64})
	payload := func(i int) []byte { return fmt.Appendf(nil, "e%07d", i) }
	dropped := 0
	for i := range 40 {
		d, err := s.Append([][]byte{payload(i)})
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		dropped += d
	}
	if s.Bytes() > 256 {
		t.Errorf("spool holds %d bytes, over its 256 limit", s.Bytes())
	}
	if dropped+s.Len() != 40 {
		t.Errorf("dropped %d and %d left, want the 40 appended accounted for", dropped, s.Len())
	}
	got := drain(t, s, 100)
	var want []string
	for i := dropped; i < 40; i++ {
		want = append(want, string(payload(i)))
	}
	if !slices.Equal(got, want) {
		t.Errorf("after drops the spool holds %v, want the newest %v", got, want)
	}
	if _, err := s.Append([][]byte{make([]byte, 100)}); !errors.Is(err, spool.ErrTooLarge) {
		t.Errorf("Append of an entry larger than a segment = %v, want ErrTooLarge", err)
	}
}

// An entry handed out and then deleted for room is not dropped by Append, since the reader may
// deliver it; if the reader rewinds instead, Rewind reports it lost.
func TestRewindReportsEntriesDeletedWhileHandedOut(t *testing.T) {
	t.Parallel()
	s, _ := open(t, t.TempDir(), spool.Options{MaxBytes: 128, SegmentBytes: 64})
	payload := func(i int) []byte { return fmt.Appendf(nil, "e%07d", i) }
	for i := range 8 {
		s.Append([][]byte{payload(i)})
	}
	if lost := s.Rewind(); lost != 0 {
		t.Errorf("Rewind with nothing handed out = %d lost, want 0", lost)
	}
	if held, _, _, _ := s.Read(3, 1<<20); len(held) != 3 {
		t.Fatalf("Read = %d entries, want 3", len(held))
	}
	if d, err := s.Append([][]byte{payload(8)}); err != nil || d != 1 {
		t.Fatalf("Append = %d dropped, %v; want the one entry not handed out", d, err)
	}
	if lost := s.Rewind(); lost != 3 {
		t.Errorf("Rewind after the head segment went = %d lost, want the 3 handed out", lost)
	}
	if lost := s.Rewind(); lost != 0 {
		t.Errorf("second Rewind = %d lost, want 0", lost)
	}
	// A batch handed out, deleted and then committed (delivered) is not reported by a later Rewind.
	if held, next, _, _ := s.Read(4, 1<<20); len(held) != 4 {
		t.Fatalf("Read = %d entries, want 4", len(held))
	} else {
		s.Append([][]byte{payload(9), payload(10), payload(11), payload(12)})
		s.Commit(next[3])
	}
	s.Read(1, 1<<20)
	if lost := s.Rewind(); lost != 0 {
		t.Errorf("Rewind after a committed batch = %d lost, want 0", lost)
	}
}

func TestDroppingTheSegmentBeingRead(t *testing.T) {
	t.Parallel()
	s, _ := open(t, t.TempDir(), spool.Options{MaxBytes: 128, SegmentBytes: 64})
	payload := func(i int) []byte { return fmt.Appendf(nil, "e%07d", i) }
	for i := range 8 {
		s.Append([][]byte{payload(i)})
	}
	held, next, _, _ := s.Read(2, 1<<20) // e0, e1 in flight
	if len(held) != 2 {
		t.Fatalf("Read = %d entries, want 2", len(held))
	}
	d, err := s.Append([][]byte{payload(8)})
	if err != nil {
		t.Fatal(err)
	}
	if d != 2 {
		t.Errorf("dropping the head segment with 2 of 4 entries in flight counts %d dropped, want 2", d)
	}
	if err := s.Commit(next[1]); err != nil {
		t.Errorf("Commit into a deleted segment = %v, want nil", err)
	}
	if got, want := drain(t, s, 10), []string{"e0000004", "e0000005", "e0000006", "e0000007", "e0000008"}; !slices.Equal(got, want) {
		t.Errorf("spool holds %v, want %v", got, want)
	}
}

func TestDamagedTailIsCut(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		damage func(t *testing.T, path string, size int64)
		// want is how many of the 5 entries survive.
		want int
	}{
		{
			name: "half an entry at the end",
			damage: func(t *testing.T, path string, size int64) {
				f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
				f.Write([]byte{20, 0, 0, 0, 1, 2, 3, 4, 'x'})
				f.Close()
			},
			want: 5,
		},
		{
			name: "a header cut short",
			damage: func(t *testing.T, path string, size int64) {
				os.Truncate(path, size-13) // inside the last entry's payload
			},
			want: 4,
		},
		{
			name: "a flipped byte in the third entry",
			damage: func(t *testing.T, path string, size int64) {
				f, _ := os.OpenFile(path, os.O_RDWR, 0)
				f.WriteAt([]byte{'#'}, 2*(8+7)+8+2)
				f.Close()
			},
			want: 2,
		},
		{
			name: "a length beyond any entry",
			damage: func(t *testing.T, path string, size int64) {
				f, _ := os.OpenFile(path, os.O_RDWR, 0)
				f.WriteAt([]byte{0xff, 0xff, 0xff, 0x7f}, 0)
				f.Close()
			},
			want: 0,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s, _ := open(t, dir, spool.Options{MaxBytes: 1 << 20})
			s.Append(entries(0, 5)) // "entry-N": 7 bytes each
			s.Close()
			segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
			if len(segs) != 1 {
				t.Fatalf("segments %v, want 1", segs)
			}
			st, _ := os.Stat(segs[0])
			tc.damage(t, segs[0], st.Size())
			s2, rec := open(t, dir, spool.Options{MaxBytes: 1 << 20})
			if rec.Entries != tc.want || rec.CorruptEntries != 1 || rec.CorruptBytes <= 0 {
				t.Errorf("Open reports %+v, want %d entries and one damaged stretch", rec, tc.want)
			}
			if got := drain(t, s2, 10); !slices.Equal(got, names(0, tc.want)) {
				t.Errorf("after the damage the spool yields %v, want %v", got, names(0, tc.want))
			}
			// New entries after the cut read back whole.
			s2.Append(entries(5, 2))
			if got := drain(t, s2, 10); !slices.Equal(got, names(5, 2)) {
				t.Errorf("entries appended after the cut read back as %v", got)
			}
		})
	}
}

func TestOpenRefusesNoLimit(t *testing.T) {
	t.Parallel()
	if _, _, err := spool.Open(t.TempDir(), spool.Options{}); err == nil {
		t.Error("Open without a size limit succeeded, want an error")
	}
}

func TestRejectsRotateWithinLimit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r, err := spool.OpenRejects(dir, 400)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := range 10 {
		if _, err := r.Add("webhook: status 400", [][]byte{fmt.Appendf(nil, `{"n":%d}`, i)}); err != nil {
			t.Fatal(err)
		}
	}
	if d, _ := r.Add("x", [][]byte{bytes.Repeat([]byte("1"), 300)}); d != 1 {
		t.Errorf("a line longer than half the limit: dropped %d, want 1", d)
	}
	var total int64
	var lines []string
	for _, name := range []string{spool.RejectsFile + ".1", spool.RejectsFile} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		total += int64(len(b))
		lines = append(lines, strings.Split(strings.TrimSpace(string(b)), "\n")...)
	}
	if total > 400 {
		t.Errorf("rejects files hold %d bytes, over the 400 limit", total)
	}
	for _, l := range lines {
		var v struct {
			Time, Reason string
			Record       map[string]int
		}
		if err := json.Unmarshal([]byte(l), &v); err != nil || v.Reason != "webhook: status 400" || v.Time == "" {
			t.Errorf("rejects line %q is not the expected JSON (%v)", l, err)
		}
	}
	last := lines[len(lines)-1]
	if !strings.Contains(last, `"record":{"n":9}`) {
		t.Errorf("newest rejects line = %q, want record 9", last)
	}
}

// BenchmarkSpool measures appending records of a typical size in batches and reading them back,
// without fsync (which the disk, not the code, decides) and with it.
func BenchmarkSpool(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 512)
	batch := make([][]byte, 100)
	for i := range batch {
		batch[i] = payload
	}
	for _, sync := range []bool{false, true} {
		b.Run("append+replay/fsync="+strconv.FormatBool(sync), func(b *testing.B) {
			s, _, err := spool.Open(b.TempDir(), spool.Options{MaxBytes: 1 << 30, NoSync: !sync})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.SetBytes(int64(len(payload) * len(batch)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Append(batch); err != nil {
					b.Fatal(err)
				}
				es, next, _, err := s.Read(len(batch), 1<<20)
				if err != nil || len(es) != len(batch) {
					b.Fatalf("Read = %d, %v", len(es), err)
				}
				if err := s.Commit(next[len(next)-1]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// keepK ranks the entries of the keep tests: those whose payload starts with "K" are kept (rank
// 2), those starting with "m" go after the others (rank 1), the rest first (rank 0).
func keepK(s *spool.Spool) {
	s.SetRank(func(e []byte) int {
		switch {
		case len(e) > 0 && e[0] == 'K':
			return 2
		case len(e) > 0 && e[0] == 'm':
			return 1
		}
		return 0
	}, 2)
}

// TestKeepDeletesOthersFirst fills a spool with a kept entry in every four: making room deletes
// the others, oldest first, never a kept one, and what is left comes out in the order it went in.
func TestKeepDeletesOthersFirst(t *testing.T) {
	t.Parallel()
	// 16-byte entries (8 of header), 4 per 64-byte segment, 16 in the spool.
	s, _ := open(t, t.TempDir(), spool.Options{MaxBytes: 256, SegmentBytes: 64})
	keepK(s)
	payload := func(i int) []byte {
		if i%4 == 0 {
			return fmt.Appendf(nil, "K%07d", i)
		}
		return fmt.Appendf(nil, "p%07d", i)
	}
	dropped := 0
	for i := range 40 {
		d, err := s.Append([][]byte{payload(i)})
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		dropped += d
		if s.Bytes() > 256 {
			t.Fatalf("after %d appends the spool holds %d bytes, over its 256", i+1, s.Bytes())
		}
	}
	if dropped+s.Len() != 40 {
		t.Errorf("dropped %d and %d left, want the 40 appended accounted for", dropped, s.Len())
	}
	got := drain(t, s, 100)
	var keptGot []string
	for _, e := range got {
		if e[0] == 'K' {
			keptGot = append(keptGot, e)
		}
	}
	var wantKept []string
	for i := 0; i < 40; i += 4 {
		wantKept = append(wantKept, string(payload(i)))
	}
	if !slices.Equal(keptGot, wantKept) {
		t.Errorf("kept entries after the spool made room: %v, want all of %v", keptGot, wantKept)
	}
	if len(got) == 0 || got[len(got)-1] != string(payload(39)) {
		t.Errorf("spool holds %v, want the newest entry last", got)
	}
	for i := 1; i < len(got); i++ {
		if got[i][1:] <= got[i-1][1:] {
			t.Errorf("entries out of order: %v", got)
			break
		}
	}
}

// TestKeepRefusesNewestWhenFull: once kept entries fill the spool, the newest are refused and
// the oldest kept stay.
func TestKeepRefusesNewestWhenFull(t *testing.T) {
	t.Parallel()
	s, _ := open(t, t.TempDir(), spool.Options{MaxBytes: 256, SegmentBytes: 64})
	keepK(s)
	payload := func(i int) []byte { return fmt.Appendf(nil, "K%07d", i) }
	for i := range 16 {
		if _, err := s.Append([][]byte{payload(i)}); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
	_, err := s.Append([][]byte{payload(16), []byte("p0000017")})
	var full *spool.FullError
	if !errors.As(err, &full) || !errors.Is(err, spool.ErrFull) || full.Written != 0 || full.Refused != 2 {
		t.Fatalf("Append to a spool full of kept entries = %v, want a FullError refusing both", err)
	}
	var want []string
	for i := range 16 {
		want = append(want, string(payload(i)))
	}
	if got := drain(t, s, 100); !slices.Equal(got, want) {
		t.Errorf("spool holds %v, want the 16 oldest kept entries", got)
	}
}

// TestKeepSparesHandedOutAndHeld: entries handed out by Read and those under Hold survive room
// being made, and their positions stay good, across a restart too.
func TestKeepSparesHandedOutAndHeld(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	opts := spool.Options{MaxBytes: 256, SegmentBytes: 128}
	s, _ := open(t, dir, opts)
	keepK(s)
	payload := func(i int) []byte { return fmt.Appendf(nil, "p%07d", i) }
	for i := range 16 {
		s.Append([][]byte{payload(i)})
	}
	out, next, _, err := s.Read(2, 1<<20) // p0, p1 handed out
	if err != nil || len(out) != 2 {
		t.Fatalf("Read = %d, %v", len(out), err)
	}
	s.Hold(3) // p0 … p2 protected
	d, err := s.Append([][]byte{payload(16), payload(17)})
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if d != 5 {
		t.Errorf("Append deleted %d entries, want 5 (p3 … p7 of the head segment)", d)
	}
	if err := s.Commit(next[1]); err != nil {
		t.Fatalf("Commit of handed-out entries after room was made: %v", err)
	}
	s.Close()
	s2, rec := open(t, dir, opts)
	keepK(s2)
	if rec.Entries != 11-2+2 || rec.CorruptEntries != 0 {
		t.Errorf("reopened spool reports %+v, want 11 entries and no damage", rec)
	}
	want := []string{"p0000002", "p0000008", "p0000009", "p0000010", "p0000011", "p0000012", "p0000013", "p0000014", "p0000015", "p0000016", "p0000017"}
	if got := drain(t, s2, 100); !slices.Equal(got, want) {
		t.Errorf("after room was made and a restart the spool holds %v, want %v", got, want)
	}
}

// TestUnfinishedCompactionIsRemoved: a rewritten segment a crash left beside its original is
// removed on Open; the original is used.
func TestUnfinishedCompactionIsRemoved(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := open(t, dir, spool.Options{MaxBytes: 1 << 20})
	s.Append(entries(0, 3))
	s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) != 1 {
		t.Fatalf("segments %v, want 1", segs)
	}
	if err := os.WriteFile(segs[0]+".tmp", []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	s2, rec := open(t, dir, spool.Options{MaxBytes: 1 << 20})
	if rec.Entries != 3 {
		t.Errorf("reopened spool reports %+v, want 3 entries", rec)
	}
	if _, err := os.Stat(segs[0] + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the unfinished segment is still there (%v)", err)
	}
	if got := drain(t, s2, 10); !slices.Equal(got, names(0, 3)) {
		t.Errorf("spool holds %v", got)
	}
}

// TestRankDeletesLowestFirst: a spool full of three ranks deletes the lowest rank first, then
// the next, oldest first, and never the rank it keeps.
func TestRankDeletesLowestFirst(t *testing.T) {
	t.Parallel()
	s, _ := open(t, t.TempDir(), spool.Options{MaxBytes: 256, SegmentBytes: 64})
	keepK(s)
	// 16 entries fit, 4 a segment: 2 kept, 8 of the middle rank, 6 of the lowest.
	var in [][]byte
	for i := range 16 {
		switch {
		case i == 0 || i == 8:
			in = append(in, fmt.Appendf(nil, "K%07d", i))
		case i%2 == 1:
			in = append(in, fmt.Appendf(nil, "m%07d", i))
		default:
			in = append(in, fmt.Appendf(nil, "p%07d", i))
		}
	}
	for _, e := range in {
		if _, err := s.Append([][]byte{e}); err != nil {
			t.Fatal(err)
		}
	}
	// Nine more of the middle rank: the 6 of the lowest rank go, then the middle ones of the
	// oldest segments, a segment at a time: the first two segments hold 4.
	deleted := 0
	for i := 16; i < 25; i++ {
		d, err := s.Append([][]byte{fmt.Appendf(nil, "m%07d", i)})
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		deleted += d
	}
	got := drain(t, s, 100)
	want := []string{"K0000000", "K0000008", "m0000009", "m0000011", "m0000013", "m0000015"}
	for i := 16; i < 25; i++ {
		want = append(want, fmt.Sprintf("m%07d", i))
	}
	slices.Sort(got) // K before m; each rank in order
	if !slices.Equal(got, want) || deleted != 10 {
		t.Errorf("spool holds %v after %d deletions, want %v after 10", got, deleted, want)
	}
}

// TestRoomMadeBehindTheCommittedHead: when making room leaves the head segment with only
// committed entries, reading goes on with the next segment.
func TestRoomMadeBehindTheCommittedHead(t *testing.T) {
	t.Parallel()
	s, _ := open(t, t.TempDir(), spool.Options{MaxBytes: 256, SegmentBytes: 128})
	keepK(s)
	payload := func(i int) []byte { return fmt.Appendf(nil, "p%07d", i) }
	for i := range 16 {
		s.Append([][]byte{payload(i)})
	}
	out, next, _, err := s.Read(3, 1<<20)
	if err != nil || len(out) != 3 {
		t.Fatalf("Read = %d, %v", len(out), err)
	}
	if err := s.Commit(next[2]); err != nil { // p0 … p2 delivered
		t.Fatal(err)
	}
	// Room for five deletes p3 … p7: the head segment holds only committed entries then.
	if _, err := s.Append([][]byte{payload(16), payload(17), payload(18), payload(19), payload(20)}); err != nil {
		t.Fatal(err)
	}
	got := drain(t, s, 100)
	want := names(0, 0)
	for i := 8; i <= 20; i++ {
		want = append(want, string(payload(i)))
	}
	if !slices.Equal(got, want) {
		t.Errorf("after room was made behind the committed head the spool gave %v, want %v", got, want)
	}
}
