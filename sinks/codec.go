package sinks

import (
	"encoding/json"
	"errors"
	"fmt"

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
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", rec, err)
	}
	out := make([]byte, 0, len(b)+1)
	return append(append(out, tag), b...), nil
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
	v, err := WithKind(rec)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", rec, err)
	}
	return b, nil
}

// WithKind returns the value to encode for rec: rec itself, or a copy whose Kind is the one its
// type implies when the Kind field is empty or wrong. The record is never changed in place.
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
