package spool

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// ErrFull is what a *FullError wraps: a ranked spool had no room left but for the entries it
// keeps.
var ErrFull = errors.New("spool: full of entries it keeps")

// FullError is Append's error when a ranked spool refused entries: the first Written were
// appended, the Refused after them were not.
type FullError struct {
	Written, Refused int
}

func (e *FullError) Error() string {
	return fmt.Sprintf("spool: full of entries it keeps; %d entries refused", e.Refused)
}

func (e *FullError) Unwrap() error { return ErrFull }

// SetRank ranks the entries by what they are worth when the spool must make room: rank gives an
// entry's rank (0 and up) from its payload, and entries of rank keep or more are never deleted.
// Instead of deleting its oldest segments whole, Append then deletes the entries of rank 0 in
// its oldest segments, then of rank 1, and so on below keep (each segment is rewritten without
// them, so the order of what stays never changes); once the kept entries alone leave no room it
// refuses the newest entries rather than delete one (a *FullError). Entries handed out by Read
// and not committed, and those Hold protects, are never deleted either. rank is called with
// payloads under the spool's lock and must be quick; nil restores whole-segment deletion. Call
// it before the first Append.
func (s *Spool) SetRank(rank func(entry []byte) int, keep int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rank, s.keepRank = rank, keep
	s.dirty()
}

// Hold protects the n entries after the last committed one from being deleted for room (in a
// ranked spool) until they are committed; a later Hold replaces it. The caller holds entries it
// counts on finding first in line, such as copies of records it is still writing elsewhere.
func (s *Spool) Hold(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held = max(n, 0)
	s.dirty()
}

// dirty forgets which segments were found clean: what is protected changed.
func (s *Spool) dirty() {
	for i := range s.segs {
		s.segs[i].clean = 0
	}
}

// makeRoomRanked makes room for entries by deleting the entries of the lowest ranks first,
// oldest segments first. It returns the deleted count and the leading entries that fit; refused
// is how many after them do not.
func (s *Spool) makeRoomRanked(entries [][]byte) (deleted int, fit [][]byte, refused int, err error) {
	var need int64
	for _, e := range entries {
		need += int64(len(e)) + headerBytes
	}
	for level := 0; level < s.keepRank && s.total+need > s.maxBytes; level++ {
		for i := 0; s.total+need > s.maxBytes && i < len(s.segs); {
			if s.segs[i].clean > level {
				i++
				continue
			}
			n := len(s.segs)
			d, err := s.compact(i, level)
			deleted += d
			if err != nil {
				return deleted, nil, 0, err
			}
			if len(s.segs) == n {
				i++
			}
		}
	}
	room := s.maxBytes - s.total
	k := 0
	for ; k < len(entries); k++ {
		room -= int64(len(entries[k])) + headerBytes
		if room < 0 {
			break
		}
	}
	return deleted, entries[:k], len(entries) - k, nil
}

// protected is the number of leading entries of segment i that compaction leaves alone: in the
// head, those handed out or committed; from the committed ones on, those Hold protects.
func (s *Spool) protected(i int) int {
	if len(s.segs) == 0 {
		return 0
	}
	held := s.held
	head := s.segs[0]
	p0 := min(max(s.read.n, s.commit.n+held), head.entries)
	if s.read.seq != head.seq {
		p0 = min(s.commit.n+held, head.entries)
	}
	if i == 0 {
		return p0
	}
	held -= head.entries - s.commit.n
	for j := 1; j < i && held > 0; j++ {
		held -= s.segs[j].entries
	}
	return min(max(held, 0), s.segs[i].entries)
}

// compact rewrites segment i without the entries of rank level or lower after its protected
// ones, and returns how many it deleted. The new file replaces the old one
// by rename, so a crash leaves one or the other; its protected entries keep their offsets, so
// the read and commit positions and the cursor stay valid. A segment left empty is removed. A
// damaged segment is left as it is, for the reader to cut and count.
func (s *Spool) compact(i, level int) (int, error) {
	sg := &s.segs[i]
	sg.clean = level + 1
	src, err := os.Open(s.segPath(sg.seq))
	if err != nil {
		return 0, fmt.Errorf("spool: open segment to make room: %w", err)
	}
	defer src.Close()
	r := newEntryReader(src, 0, sg.bytes)
	keepFirst := s.protected(i)
	var payload []byte
	for range keepFirst {
		if payload, err = r.next(payload); err != nil {
			return 0, nil
		}
	}
	prefix := r.off
	// A first pass decides; most segments of a flood are rewritten, so reading twice costs
	// less than holding a whole segment in memory.
	kept, deleted := keepFirst, 0
	for r.off < sg.bytes {
		if payload, err = r.next(payload); err != nil {
			return 0, nil
		}
		if s.rank(payload) > level {
			kept++
		} else {
			deleted++
		}
	}
	if deleted == 0 {
		return 0, nil
	}
	if err := s.replaceSegment(i, src, prefix, kept, level); err != nil {
		return 0, err
	}
	return deleted, nil
}

// replaceSegment makes segment i hold the first prefix bytes of src and then the entries after
// them of a rank above level, kept entries in all.
func (s *Spool) replaceSegment(i int, src *os.File, prefix int64, kept, level int) error {
	sg := &s.segs[i]
	path := s.segPath(sg.seq)
	if s.r != nil && s.rseq == sg.seq {
		s.r.Close()
		s.r = nil
	}
	if i == len(s.segs)-1 && s.w != nil {
		s.w.Close()
		s.w = nil
	}
	if kept == 0 && (i > 0 || len(s.segs) > 1) {
		if i == 0 {
			return s.removeHead()
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("spool: remove segment: %w", err)
		}
		s.total -= sg.bytes
		s.segs = append(s.segs[:i], s.segs[i+1:]...)
		return nil
	}
	tmp := path + tmpSuffix
	size, err := s.writeKept(tmp, src, prefix, sg.bytes, level)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("spool: rewrite segment: %w", err)
	}
	s.total += size - sg.bytes
	sg.bytes, sg.entries = size, kept
	if i == 0 {
		// A head left with only what was committed is done with: Read would find nothing to
		// hand out in it and never move on.
		s.advanceHead()
	}
	return nil
}

// writeKept writes path: the first prefix bytes of src, then the entries of the rest up to end
// of a rank above level. It returns the size written.
func (s *Spool) writeKept(path string, src *os.File, prefix, end int64, level int) (int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fileMode)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 64<<10)
	if _, err := io.Copy(w, io.NewSectionReader(src, 0, prefix)); err != nil {
		return 0, err
	}
	size := prefix
	r := newEntryReader(src, prefix, end)
	var payload, entry []byte
	for r.off < end {
		if payload, err = r.next(payload); err != nil {
			return 0, err
		}
		if s.rank(payload) > level {
			entry = appendEntry(entry[:0], payload)
			w.Write(entry)
			size += int64(len(entry))
		}
	}
	if err := w.Flush(); err != nil {
		return 0, err
	}
	if s.sync {
		if err := f.Sync(); err != nil {
			return 0, err
		}
	}
	return size, f.Close()
}

// entryReader reads the entries of a segment in order, buffered, keeping their offset.
type entryReader struct {
	br  *bufio.Reader
	off int64
}

func newEntryReader(f *os.File, from, to int64) *entryReader {
	return &entryReader{br: bufio.NewReaderSize(io.NewSectionReader(f, from, to-from), 256<<10), off: from}
}

// next reads the next entry's payload into buf.
func (r *entryReader) next(buf []byte) ([]byte, error) {
	p, err := readEntry(r.br, buf[:0])
	if err == nil {
		r.off += headerBytes + int64(len(p))
	}
	return p, err
}
