package state

import (
	"crypto/sha1" //nolint:gosec // Redis names scripts by their SHA-1; not a security use
	"encoding/hex"
)

// Script is a Lua script Redis runs atomically, sent by its SHA-1 (EVALSHA) and in full only
// when Redis does not know it yet.
type Script struct {
	src, sha string
}

// NewScript returns the script src.
func NewScript(src string) *Script {
	sum := sha1.Sum([]byte(src)) //nolint:gosec // see the import
	return &Script{src: src, sha: hex.EncodeToString(sum[:])}
}

// evalArgs are the arguments of cmd (evalsha or eval) running body on keys with args.
func (s *Script) evalArgs(cmd, body string, keys []string, args []any) []any {
	out := make([]any, 0, 3+len(keys)+len(args))
	out = append(out, cmd, body, len(keys))
	for _, k := range keys {
		out = append(out, k)
	}
	return append(out, args...)
}
