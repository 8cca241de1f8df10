package sinks

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/apisessions/apisessions/sessions/record"
)

// Spool entries are one type byte followed by the record's JSON, so that a record whose Kind
// field is empty or wrong still comes back as the type it was.
const (
	tagRequest = 'r'
	tagSession = 's'
)

// encodeEntry renders rec as a spool entry.
func encodeEntry(rec record.Record) ([]byte, error) {
	var tag byte
	switch r := rec.(type) {
	case *record.Request:
		if r == nil {
			return nil, errors.New("nil request record")
		}
		tag = tagRequest
	case *record.Session:
		if r == nil {
			return nil, errors.New("nil session record")
		}
		tag = tagSession
	default:
		return nil, fmt.Errorf("record type %T cannot be spooled", rec)
	}
	bp := getScratch()
	defer putScratch(bp)
	b := append((*bp)[:0], tag)
	var err error
	switch r := rec.(type) {
	case *record.Request:
		b, err = r.AppendJSON(b)
	case *record.Session:
		b = r.AppendJSON(b)
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
	case tagRequest:
		var r record.Request
		if err := json.Unmarshal(e[1:], &r); err != nil {
			return nil, fmt.Errorf("decode request record: %w", err)
		}
		r.Kind = record.KindRequest
		return &r, nil
	case tagSession:
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
	switch r := rec.(type) {
	case *record.Request:
		if r == nil {
			return dst, errors.New("nil request record")
		}
		b, err := appendRequest(dst, r)
		if err != nil {
			return dst, fmt.Errorf("encode %T: %w", rec, err)
		}
		return b, nil
	case *record.Session:
		if r == nil {
			return dst, errors.New("nil session record")
		}
		if r.Kind != record.KindSession {
			// The copy is encoded and dropped; it stays on the stack.
			c := *r
			c.Kind = record.KindSession
			return c.AppendJSON(dst), nil
		}
		return r.AppendJSON(dst), nil
	case nil:
		return dst, errors.New("nil record")
	}
	// Another implementation of record.Record has no encoder of its own.
	b, err := json.Marshal(rec)
	if err != nil {
		return dst, fmt.Errorf("encode %T: %w", rec, err)
	}
	return append(dst, b...), nil
}

// appendRequest encodes r with the kind KindRequest, copying r when its Kind differs.
func appendRequest(dst []byte, r *record.Request) ([]byte, error) {
	if r.Kind != record.KindRequest {
		c := *r
		c.Kind = record.KindRequest
		return c.AppendJSON(dst)
	}
	return r.AppendJSON(dst)
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
// json.Marshal of this value is the reference AppendRecord is tested against (the sinks encode
// with AppendRecord).
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
