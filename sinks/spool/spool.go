package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

const (
	headerBytes = 8
	segSuffix   = ".seg"
	tmpSuffix   = ".tmp"
	cursorName  = "cursor"
	cursorBytes = 28
	fileMode    = 0o600
	dirMode     = 0o700
	// minSegmentBytes and maxSegmentBytes bound a segment: small enough that dropping the oldest
	// one when full loses a small share of the spool, large enough that files stay few.
	minSegmentBytes = 64 << 10
	maxSegmentBytes = 64 << 20
	// segmentsPerSpool is how many segments a full spool holds at most (about).
	segmentsPerSpool = 16
)

// MaxEntryBytes bounds one entry; a longer one is refused by Append and, read from disk, taken
// for damage.
const MaxEntryBytes = 64 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors Append reports for entries it refuses.
var (
	// ErrTooLarge is returned for an entry longer than MaxEntryBytes or than the whole spool.
	ErrTooLarge = errors.New("spool: entry larger than the spool allows")
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("spool: closed")
)

// Options configures a spool.
type Options struct {
	// MaxBytes bounds the segments on disk; it must be positive.
	MaxBytes int64
	// SegmentBytes is the size at which a segment is closed and the next one begun; zero picks
	// MaxBytes/16 within [64 KiB, 64 MiB].
	SegmentBytes int64
	// NoSync skips the fsync after each Append, trading power-loss safety for speed (entries still
	// survive a crash of the process). Benchmarks and tests use it.
	NoSync bool
}

// Recovered reports what Open found.
type Recovered struct {
	// Entries is the number of entries waiting to be read.
	Entries int
	// Bytes is the size of the segments on disk.
	Bytes int64
	// CorruptEntries counts damaged stretches cut away (each ends its segment), CorruptBytes the
	// bytes cut.
	CorruptEntries int
	CorruptBytes   int64
}

// Pos is a reading position: the entry after the last one read.
type Pos struct {
	seq uint64
	off int64
	n   int // entries of segment seq before off
}

// segment is one file of the spool.
type segment struct {
	seq     uint64
	bytes   int64
	entries int
	// clean is the lowest rank the segment may still hold entries of that could be deleted
	// for room (keep.go): 0 until it is found otherwise; an Append to it, a Rewind or a Hold
	// resets it.
	clean int
}

// Spool is a bounded FIFO of entries on disk. It is safe for concurrent use; entries come out in
// the order they went in.
type Spool struct {
	dir          string
	maxBytes     int64
	segmentBytes int64
	sync         bool

	mu     sync.Mutex
	closed bool
	segs   []segment // oldest first; the last one is appended to
	total  int64     // bytes of all segments
	w      *os.File  // the last segment, open for appending; nil until the next Append
	r      *os.File  // segs[0], open for reading; nil until the next Read
	rseq   uint64    // the segment r reads
	commit Pos       // within segs[0]: what was delivered
	read   Pos       // within segs[0]: what was handed out by Read (never before commit)
	cursor *os.File
	curBuf [cursorBytes]byte
	wbuf   []byte

	// lostOut counts entries handed out and not committed whose segment Append deleted for
	// room; Rewind reports them.
	lostOut int

	// rank, when set, ranks the entries a full spool deletes (SetRank): those below keepRank,
	// lowest first; held is the number of entries after the committed ones it must not delete
	// for room (Hold).
	rank     func([]byte) int
	keepRank int
	held     int
}

// Open opens (creating it if needed) the spool in dir, scans what it holds and cuts away a torn
// tail. Only one Spool may use a directory at a time.
func Open(dir string, opts Options) (*Spool, Recovered, error) {
	if opts.MaxBytes <= 0 {
		return nil, Recovered{}, fmt.Errorf("spool: size limit %d is not positive", opts.MaxBytes)
	}
	seg := opts.SegmentBytes
	if seg <= 0 {
		seg = min(max(opts.MaxBytes/segmentsPerSpool, minSegmentBytes), maxSegmentBytes)
	}
	s := &Spool{dir: dir, maxBytes: opts.MaxBytes, segmentBytes: min(seg, opts.MaxBytes), sync: !opts.NoSync}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, Recovered{}, fmt.Errorf("spool: create directory: %w", err)
	}
	rec, err := s.recover()
	if err != nil {
		s.closeFiles()
		return nil, Recovered{}, err
	}
	return s, rec, nil
}

func segName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, segSuffix) }

func (s *Spool) segPath(seq uint64) string { return filepath.Join(s.dir, segName(seq)) }

// recover lists the segments, validates them and positions the reader at the cursor.
func (s *Spool) recover() (Recovered, error) {
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return Recovered{}, fmt.Errorf("spool: read directory: %w", err)
	}
	var seqs []uint64
	for _, de := range des {
		name := de.Name()
		if de.Type().IsRegular() && strings.HasSuffix(name, segSuffix+tmpSuffix) {
			// A compaction cut short by a crash; the segment it was to replace is whole.
			if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return Recovered{}, fmt.Errorf("spool: remove unfinished segment: %w", err)
			}
			continue
		}
		if !de.Type().IsRegular() || !strings.HasSuffix(name, segSuffix) {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 10, 64)
		if err != nil || segName(seq) != name {
			continue
		}
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	var rec Recovered
	for _, seq := range seqs {
		sg, cutEntries, cutBytes, err := s.scan(seq)
		if err != nil {
			return Recovered{}, err
		}
		rec.CorruptEntries += cutEntries
		rec.CorruptBytes += cutBytes
		if sg.entries == 0 {
			if err := os.Remove(s.segPath(seq)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return Recovered{}, fmt.Errorf("spool: remove empty segment: %w", err)
			}
			continue
		}
		s.segs = append(s.segs, sg)
		s.total += sg.bytes
	}
	s.cursor, err = os.OpenFile(filepath.Join(s.dir, cursorName), os.O_RDWR|os.O_CREATE, fileMode)
	if err != nil {
		return Recovered{}, fmt.Errorf("spool: open cursor: %w", err)
	}
	if len(s.segs) > 0 {
		s.commit = Pos{seq: s.segs[0].seq}
		if c, ok := s.loadCursor(); ok && c.seq == s.segs[0].seq && c.off <= s.segs[0].bytes && c.n <= s.segs[0].entries {
			s.commit = c
		}
		s.read = s.commit
		if s.commit.n == s.segs[0].entries {
			// Every entry of the head was delivered before the crash: drop it now.
			s.advanceHead()
		}
	}
	rec.Entries = s.pendingLocked()
	rec.Bytes = s.total
	return rec, nil
}

// scan validates segment seq, truncating it after its last good entry.
func (s *Spool) scan(seq uint64) (sg segment, cutEntries int, cutBytes int64, err error) {
	f, err := os.OpenFile(s.segPath(seq), os.O_RDWR, fileMode)
	if err != nil {
		return segment{}, 0, 0, fmt.Errorf("spool: open segment: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return segment{}, 0, 0, fmt.Errorf("spool: stat segment: %w", err)
	}
	size := st.Size()
	sg.seq = seq
	r := &offsetReader{f: f}
	var buf []byte
	for sg.bytes < size {
		buf, err = readEntry(r, buf[:0])
		if err != nil {
			break
		}
		sg.bytes = r.off
		sg.entries++
	}
	if sg.bytes < size {
		if err := f.Truncate(sg.bytes); err != nil {
			return segment{}, 0, 0, fmt.Errorf("spool: truncate damaged segment: %w", err)
		}
		cutEntries, cutBytes = 1, size-sg.bytes
	}
	return sg, cutEntries, cutBytes, nil
}

// offsetReader reads a file sequentially with ReadAt, so the position is known exactly.
type offsetReader struct {
	f   *os.File
	off int64
}

func (r *offsetReader) Read(p []byte) (int, error) {
	n, err := r.f.ReadAt(p, r.off)
	r.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

var errDamaged = errors.New("spool: damaged entry")

// readEntry reads one entry's payload into buf, checking its length and checksum.
func readEntry(r io.Reader, buf []byte) ([]byte, error) {
	var h [headerBytes]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return buf, err
	}
	n := binary.LittleEndian.Uint32(h[0:4])
	if n > MaxEntryBytes {
		return buf, errDamaged
	}
	buf = slices.Grow(buf[:0], int(n))[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return buf, err
	}
	if crc32.Checksum(buf, castagnoli) != binary.LittleEndian.Uint32(h[4:8]) {
		return buf, errDamaged
	}
	return buf, nil
}

func (s *Spool) loadCursor() (Pos, bool) {
	var b [cursorBytes]byte
	if n, _ := s.cursor.ReadAt(b[:], 0); n != cursorBytes {
		return Pos{}, false
	}
	if crc32.Checksum(b[:24], castagnoli) != binary.LittleEndian.Uint32(b[24:]) {
		return Pos{}, false
	}
	p := Pos{
		seq: binary.LittleEndian.Uint64(b[0:8]),
		off: int64(binary.LittleEndian.Uint64(b[8:16])),
		n:   int(binary.LittleEndian.Uint64(b[16:24])),
	}
	if p.off < 0 || p.n < 0 {
		return Pos{}, false
	}
	return p, true
}

func (s *Spool) storeCursor() error {
	b := s.curBuf[:]
	binary.LittleEndian.PutUint64(b[0:8], s.commit.seq)
	binary.LittleEndian.PutUint64(b[8:16], uint64(s.commit.off))
	binary.LittleEndian.PutUint64(b[16:24], uint64(s.commit.n))
	binary.LittleEndian.PutUint32(b[24:], crc32.Checksum(b[:24], castagnoli))
	if _, err := s.cursor.WriteAt(b, 0); err != nil {
		return fmt.Errorf("spool: write cursor: %w", err)
	}
	return nil
}

// Len returns the number of entries not yet committed.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pendingLocked()
}

func (s *Spool) pendingLocked() int {
	n := 0
	for _, sg := range s.segs {
		n += sg.entries
	}
	if len(s.segs) > 0 && s.segs[0].seq == s.commit.seq {
		n -= s.commit.n
	}
	return n
}

// Bytes returns the size of the segments on disk.
func (s *Spool) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// Append adds entries at the tail, in order, and makes them durable (see the package doc). To
// stay within MaxBytes it first deletes the oldest segments; dropped counts the entries they
// held that no Read had handed out yet (Rewind reports those handed out and not committed).
// A ranked spool (SetRank) deletes only entries below the rank it keeps, lowest first, and
// refuses what still does not fit: the error is then a *FullError. Entries that are empty are
// stored as such; an entry larger than MaxEntryBytes or the whole spool fails the call with
// ErrTooLarge before anything is written.
func (s *Spool) Append(entries [][]byte) (dropped int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	for _, e := range entries {
		if len(e) > MaxEntryBytes || int64(len(e))+headerBytes > s.segmentBytes {
			return 0, ErrTooLarge
		}
	}
	defer func() {
		if cap(s.wbuf) > 4<<20 {
			s.wbuf = nil
		}
	}()
	written := 0
	for len(entries) > 0 {
		chunk := entries
		refused := 0
		if s.rank != nil {
			// A segment's worth at a time, so that the newest entries of a long call may
			// displace its oldest ones, as they would those of an earlier call.
			var d int
			d, chunk, refused, err = s.makeRoomRanked(segmentful(entries, s.segmentBytes))
			dropped += d
			if err != nil {
				return dropped, err
			}
		}
		for rest := chunk; len(rest) > 0; {
			k, d, err := s.appendChunk(rest)
			dropped += d
			if err != nil {
				return dropped, err
			}
			written += k
			rest = rest[k:]
		}
		entries = entries[len(chunk):]
		if refused > 0 {
			return dropped, &FullError{Written: written, Refused: len(entries)}
		}
	}
	return dropped, nil
}

// segmentful is the leading entries that take at most size bytes on disk (at least one).
func segmentful(entries [][]byte, size int64) [][]byte {
	var n int64
	for k, e := range entries {
		if n += int64(len(e)) + headerBytes; n > size && k > 0 {
			return entries[:k]
		}
	}
	return entries
}

// appendChunk writes as many of entries as the tail segment (or a new one) takes with one
// write, making room first unless a ranked spool already did.
func (s *Spool) appendChunk(entries [][]byte) (written, dropped int, err error) {
	if err := s.ensureWriter(int64(len(entries[0])) + headerBytes); err != nil {
		return 0, 0, err
	}
	last := &s.segs[len(s.segs)-1]
	s.wbuf = s.wbuf[:0]
	k := 0
	for k < len(entries) {
		need := int64(len(entries[k])) + headerBytes
		// ensureWriter made room for the first entry; later ones go only where they fit.
		if k > 0 && last.bytes+int64(len(s.wbuf))+need > s.segmentBytes {
			break
		}
		s.wbuf = appendEntry(s.wbuf, entries[k])
		k++
	}
	if s.rank == nil {
		d, err := s.makeRoom(int64(len(s.wbuf)))
		dropped += d
		if err != nil {
			return 0, dropped, err
		}
	}
	last = &s.segs[len(s.segs)-1]
	if _, err := s.w.Write(s.wbuf); err != nil {
		// Cut a partial write back so the segment stays whole.
		_ = s.w.Truncate(last.bytes)
		return 0, dropped, fmt.Errorf("spool: append: %w", err)
	}
	if s.sync {
		if err := s.w.Sync(); err != nil {
			return 0, dropped, fmt.Errorf("spool: sync: %w", err)
		}
	}
	last.bytes += int64(len(s.wbuf))
	last.entries += k
	last.clean = 0
	s.total += int64(len(s.wbuf))
	return k, dropped, nil
}

func appendEntry(b, e []byte) []byte {
	var h [headerBytes]byte
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(e)))
	binary.LittleEndian.PutUint32(h[4:8], crc32.Checksum(e, castagnoli))
	return append(append(b, h[:]...), e...)
}

// ensureWriter opens the tail segment for appending, starting a new one when the tail cannot
// take need more bytes.
func (s *Spool) ensureWriter(need int64) error {
	if n := len(s.segs); n > 0 && s.w != nil && s.segs[n-1].bytes+need <= s.segmentBytes {
		return nil
	}
	if n := len(s.segs); n > 0 && s.w == nil && s.segs[n-1].bytes+need <= s.segmentBytes {
		f, err := os.OpenFile(s.segPath(s.segs[n-1].seq), os.O_WRONLY|os.O_APPEND, fileMode)
		if err != nil {
			return fmt.Errorf("spool: open segment: %w", err)
		}
		s.w = f
		return nil
	}
	if s.w != nil {
		if err := s.w.Close(); err != nil {
			return fmt.Errorf("spool: close segment: %w", err)
		}
		s.w = nil
	}
	seq := uint64(1)
	if n := len(s.segs); n > 0 {
		seq = s.segs[n-1].seq + 1
	} else if s.commit.seq > 0 {
		seq = s.commit.seq + 1
	}
	f, err := os.OpenFile(s.segPath(seq), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, fileMode)
	if err != nil {
		return fmt.Errorf("spool: create segment: %w", err)
	}
	s.w = f
	s.segs = append(s.segs, segment{seq: seq})
	if len(s.segs) == 1 {
		s.commit = Pos{seq: seq}
		s.read = s.commit
	}
	return nil
}

// makeRoom deletes the oldest segments (never the tail being appended to) until need more
// bytes fit within maxBytes.
func (s *Spool) makeRoom(need int64) (dropped int, err error) {
	for s.total+need > s.maxBytes && len(s.segs) > 1 {
		head := s.segs[0]
		if s.read.seq == head.seq {
			dropped += head.entries - s.read.n
			s.lostOut += s.read.n - s.commit.n
		} else {
			dropped += head.entries
		}
		if err := s.removeHead(); err != nil {
			return dropped, err
		}
	}
	return dropped, nil
}

// removeHead deletes segs[0] and points commit and read at the start of the next one.
func (s *Spool) removeHead() error {
	head := s.segs[0]
	if s.r != nil && s.rseq == head.seq {
		s.r.Close()
		s.r = nil
	}
	if err := os.Remove(s.segPath(head.seq)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("spool: remove segment: %w", err)
	}
	s.total -= head.bytes
	s.segs = s.segs[1:]
	if len(s.segs) > 0 {
		s.commit = Pos{seq: s.segs[0].seq}
	} else {
		s.commit = Pos{seq: head.seq}
	}
	s.read = s.commit
	return s.storeCursor()
}

// advanceHead deletes the head segment once every entry of it is committed, unless it is the
// tail still being appended to and holds room: then the spool is empty and starts over in a new
// segment on the next Append, so that disk space is given back.
func (s *Spool) advanceHead() {
	for len(s.segs) > 0 && s.commit.seq == s.segs[0].seq && s.commit.n >= s.segs[0].entries {
		if len(s.segs) == 1 && s.w != nil {
			s.w.Close()
			s.w = nil
		}
		if err := s.removeHead(); err != nil {
			// The file stays; the next Open finds it fully committed and removes it.
			return
		}
	}
}

// Read returns up to max entries (and about maxBytes of payload, at least one entry) after what
// earlier Reads handed out, without removing them, and the position after each, to Commit once
// they are dealt with. The payloads are fresh slices the caller owns. Entries come from the
// oldest segment only: once it is handed out entirely, Read returns nothing until it is
// committed (or Rewind is called). An empty result means nothing is waiting.
//
// A damaged entry met while reading (the file changed under the spool) ends its segment: the
// entries from it on are counted in skipped and never handed out.
func (s *Spool) Read(max, maxBytes int) (entries [][]byte, next []Pos, skipped int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, 0, ErrClosed
	}
	if s.read == s.commit {
		s.lostOut = 0 // nothing is handed out: what was lost before was delivered or rewound
	}
	for len(s.segs) > 0 {
		head := s.segs[0]
		if s.read.seq != head.seq {
			s.read = s.commit
		}
		if s.read.n >= head.entries {
			break
		}
		entries, next, cut, err := s.readHead(max, maxBytes)
		skipped += cut
		if err != nil || len(entries) > 0 {
			return entries, next, skipped, err
		}
	}
	return nil, nil, skipped, nil
}

// readHead reads entries of segs[0] from s.read on. When it meets damage before any good entry,
// it commits the segment's end and returns nothing, so that Read moves on to the next segment.
func (s *Spool) readHead(max, maxBytes int) ([][]byte, []Pos, int, error) {
	sg := s.segs[0]
	if s.r == nil || s.rseq != sg.seq {
		if s.r != nil {
			s.r.Close()
			s.r = nil
		}
		f, err := os.Open(s.segPath(sg.seq))
		if err != nil {
			return nil, nil, 0, fmt.Errorf("spool: open segment for reading: %w", err)
		}
		s.r, s.rseq = f, sg.seq
	}
	r := &offsetReader{f: s.r, off: s.read.off}
	var (
		entries [][]byte
		next    []Pos
		size    int
	)
	for len(entries) < max && s.read.n < sg.entries && (size < maxBytes || len(entries) == 0) {
		e, err := readEntry(r, nil)
		if err != nil {
			skipped := sg.entries - s.read.n
			end := Pos{seq: sg.seq, off: sg.bytes, n: sg.entries}
			s.read = end
			if len(entries) == 0 {
				return nil, nil, skipped, s.commitLocked(end)
			}
			// Committing the good entries covers the damaged rest.
			next[len(next)-1] = end
			return entries, next, skipped, nil
		}
		s.read = Pos{seq: sg.seq, off: r.off, n: s.read.n + 1}
		entries = append(entries, e)
		next = append(next, s.read)
		size += len(e)
	}
	return entries, next, 0, nil
}

// Commit records that every entry up to p (a position Read returned) was dealt with, so they are
// never handed out again, even after a restart. Committing a position in a segment that was
// deleted for room, or one already passed, does nothing.
func (s *Spool) Commit(p Pos) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return s.commitLocked(p)
}

func (s *Spool) commitLocked(p Pos) error {
	if len(s.segs) == 0 || p.seq != s.segs[0].seq || p.n <= s.commit.n && p.seq == s.commit.seq {
		return nil
	}
	if s.held > 0 {
		// Fewer entries are held from here on: some may be deleted for room again.
		if p.seq == s.commit.seq {
			s.held = max(s.held-(p.n-s.commit.n), 0)
		} else {
			s.held = max(s.held-p.n, 0)
		}
		s.dirty()
	}
	s.commit = p
	if s.read.seq != p.seq || s.read.n < p.n {
		s.read = p
	}
	if p.n >= s.segs[0].entries {
		s.advanceHead()
		return nil
	}
	return s.storeCursor()
}

// Rewind makes the next Read start again at the last committed entry: entries handed out but not
// committed are handed out again. lost counts those that cannot be: Append deleted their segment
// to make room after Read had handed them out, and did not count them as dropped then (the
// caller may still have delivered them).
func (s *Spool) Rewind() (lost int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.read = s.commit
	lost, s.lostOut = s.lostOut, 0
	s.dirty()
	return lost
}

// Close releases the files. Entries not committed stay on disk for the next Open.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var err error
	if s.w != nil && s.sync {
		err = s.w.Sync()
	}
	return errors.Join(err, s.closeFiles())
}

func (s *Spool) closeFiles() error {
	var errs []error
	for _, f := range []*os.File{s.w, s.r, s.cursor} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	s.w, s.r, s.cursor = nil, nil, nil
	return errors.Join(errs...)
}

// Discard commits the next n entries without handing them out: the caller delivered copies of
// them some other way. It returns how many it discarded (fewer when the spool holds fewer).
func (s *Spool) Discard(n int) (int, error) {
	done := 0
	for done < n {
		entries, next, _, err := s.Read(n-done, MaxEntryBytes)
		if err != nil {
			return done, err
		}
		if len(entries) == 0 {
			return done, nil
		}
		if err := s.Commit(next[len(next)-1]); err != nil {
			return done, err
		}
		done += len(entries)
	}
	return done, nil
}
