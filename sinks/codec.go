package sinks

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/apisessions/apisessions/sessions/record"
)

// Spool entries are one type byte followed by the record's JSON, so that a record whose Kind
// field is empty or wrong still comes back as the type it was. The tag also says the record's
// class (see classOf), which a full spool reads to decide what to delete first.
const (
	tagRequest       = 'r' // plain
	tagRequestAttack = 'R' // attack: a malicious request
	tagSession       = 's' // plain: a snapshot
	tagSessionFinal  = 'S' // final
	tagSessionAttack = 'A' // attack: the part had a malicious request
)

// entryRank is a spool entry's class, as the spool ranks it (spool.SetRank).
func entryRank(e []byte) int {
	if len(e) == 0 {
		return int(plain)
	}
	switch e[0] {
	case tagRequestAttack, tagSessionAttack:
		return int(attack)
	case tagSessionFinal:
		return int(final)
	}
	return int(plain)
}

// entryTag is the tag of a record of class cl.
func entryTag(rec record.Record, cl class) byte {
	_, session := rec.(*record.Session)
	switch {
	case !session && cl == attack:
		return tagRequestAttack
	case !session:
		return tagRequest
	case cl == attack:
		return tagSessionAttack
	case cl == final:
		return tagSessionFinal
	}
	return tagSession
}

// encodeEntry renders rec as a spool entry: its tag, then its JSON with the Kind it holds.
func encodeEntry(rec record.Record) ([]byte, error) {
	bp := getScratch()
	defer putScratch(bp)
	b := (*bp)[:0]
	var err error
	switch r := rec.(type) {
	case *record.Request:
		if r == nil {
			return nil, errors.New("nil request record")
		}
		b, err = r.AppendJSON(append(b, entryTag(r, classOf(r))))
	case *record.Session:
		if r == nil {
			return nil, errors.New("nil session record")
		}
		b = r.AppendJSON(append(b, entryTag(r, classOf(r))))
	default:
		return nil, fmt.Errorf("record type %T cannot be spooled", rec)
	}
	*bp = b
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", rec, err)
	}
	return clone(b), nil
}

// decodeEntry turns a spool entry back into its record.
func decodeEntry(e []byte) (record.Record, error) {
	if len(e) < 2 {
		return nil, errors.New("spool entry too short")
	}
	switch e[0] {
	case tagRequest, tagRequestAttack:
		var r record.Request
		if err := json.Unmarshal(e[1:], &r); err != nil {
			return nil, fmt.Errorf("decode request record: %w", err)
		}
		r.Kind = record.KindRequest
		return &r, nil
	case tagSession, tagSessionFinal, tagSessionAttack:
		var s record.Session
		if err := json.Unmarshal(e[1:], &s); err != nil {
			return nil, fmt.Errorf("decode session record: %w", err)
		}
		s.Kind = record.KindSession
		return &s, nil
	}
	return nil, fmt.Errorf("spool entry has unknown type %#x", e[0])
}

// MarshalRecord renders rec as the JSON object of the records contract, with the kind its type
// implies (see WithKind).
func MarshalRecord(rec record.Record) ([]byte, error) {
	bp := getScratch()
	defer putScratch(bp)
	b, err := AppendRecord((*bp)[:0], rec)
	*bp = b
	if err != nil {
		return nil, err
	}
	return clone(b), nil
}

// AppendRecord appends the JSON object that MarshalRecord renders for rec to dst and returns
// the extended slice. The bytes are those json.Marshal writes for the value WithKind returns;
// when rec cannot be encoded, dst comes back unchanged with the error.
func AppendRecord(dst []byte, rec record.Record) ([]byte, error) {
	v, err := WithKind(rec)
	if err != nil {
		return dst, err
	}
	b := dst
	switch r := v.(type) {
	case *record.Request:
		b, err = r.AppendJSON(dst)
	case *record.Session:
		b = r.AppendJSON(dst)
	default:
		// Another implementation of record.Record has no encoder of its own.
		var j []byte
		if j, err = json.Marshal(v); err == nil {
			b = append(dst, j...)
		}
	}
	if err != nil {
		return dst, fmt.Errorf("encode %T: %w", rec, err)
	}
	return b, nil
}

// scratchPool holds buffers that records are encoded into before they are copied out at their
// exact size: one allocation per record instead of the several a growing slice takes.
var scratchPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 2048)
	return &b
}}

// maxScratch caps the buffers kept in scratchPool, so one huge record does not stay pinned.
const maxScratch = 64 << 10

func getScratch() *[]byte { return scratchPool.Get().(*[]byte) }

func putScratch(b *[]byte) {
	if cap(*b) <= maxScratch {
		scratchPool.Put(b)
	}
}

// clone returns a copy of b that shares no memory with it.
func clone(b []byte) []byte { return append(make([]byte, 0, len(b)), b...) }

// WithKind returns the value to encode for rec: rec itself, or a copy whose Kind is the one its
// type implies when the Kind field is empty or wrong. The record is never changed in place.
// AppendRecord encodes this value; json.Marshal of it is the reference AppendRecord is tested
// against.
func WithKind(rec record.Record) (any, error) {
	switch r := rec.(type) {
	case *record.Request:
		if r == nil {
			return nil, errors.New("nil request record")
		}
		if r.Kind != record.KindRequest {
			c := *r
			c.Kind = record.KindRequest
			return &c, nil
		}
		return r, nil
	case *record.Session:
		if r == nil {
			return nil, errors.New("nil session record")
		}
		if r.Kind != record.KindSession {
			c := *r
			c.Kind = record.KindSession
			return &c, nil
		}
		return r, nil
	case nil:
		return nil, errors.New("nil record")
	}
	return rec, nil
}
