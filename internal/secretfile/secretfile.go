package secretfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// MaxTokenBytes bounds a token file.
const MaxTokenBytes = 4096

// ReadToken reads a token from path: the whole file without its trailing newline. what names
// the file in errors ("api token file"). A file that group or others may read, an empty one,
// and a token with anything but visible ASCII (it travels in HTTP and gRPC headers) are
// refused; errors name the file and the fix, never the token.
func ReadToken(what, path string) (string, error) {
	f, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("%s %s does not exist; write a token to it (openssl rand -hex 32 > %s; chmod 600 %s) or change %s: %w", what, path, path, path, what, err)
	case errors.Is(err, fs.ErrPermission):
		return "", fmt.Errorf("%s %s cannot be read by this process (uid %d); make its user the file's owner and chmod 600 it: %w", what, path, os.Getuid(), err)
	case err != nil:
		return "", fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s %s is readable by others (mode %04o); chmod 600 it", what, path, st.Mode().Perm())
	}
	if st.Size() > MaxTokenBytes {
		return "", fmt.Errorf("%s %s is %d bytes; a token is at most %d", what, path, st.Size(), MaxTokenBytes)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxTokenBytes+1))
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	tok := strings.TrimRight(string(b), "\r\n")
	if tok == "" || strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return "", fmt.Errorf("%s %s is empty or the token has spaces, line breaks or characters other than visible ASCII; write the token alone, e.g. openssl rand -hex 32 > %s", what, path, path)
	}
	return tok, nil
}

// MaxNamedTokensBytes bounds a file of named tokens.
const MaxNamedTokensBytes = 64 << 10

// MinNamedTokenBytes is the shortest token ReadNamedTokens accepts: a write token must not be
// guessable.
const MinNamedTokenBytes = 16

// ReadNamedTokens reads a file of named tokens: one "name:token" a line, blank lines and lines
// starting with # ignored. Names are 1 to 64 letters, digits, -, _ and . and appear in audit
// logs; tokens are visible ASCII, at least MinNamedTokenBytes long. The file's permissions are
// checked as ReadToken checks them; errors name the file, the line and the fix, never a token.
func ReadNamedTokens(what, path string) (map[string]string, error) {
	f, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%s %s does not exist; write one name:token a line to it (echo \"ops:$(openssl rand -hex 32)\" > %s; chmod 600 %s) or change %s: %w", what, path, path, path, what, err)
	case err != nil:
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s %s is readable by others (mode %04o); chmod 600 it", what, path, st.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxNamedTokensBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if len(b) > MaxNamedTokensBytes {
		return nil, fmt.Errorf("%s %s is over %d bytes", what, path, MaxNamedTokensBytes)
	}
	out := map[string]string{}
	seen := map[string]bool{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		name, tok, ok := strings.Cut(line, ":")
		switch {
		case !ok || !validName(name):
			return nil, fmt.Errorf("%s %s line %d: write name:token, the name 1 to 64 letters, digits, -, _ and .", what, path, i+1)
		case len(tok) < MinNamedTokenBytes || strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r > '~' }):
			return nil, fmt.Errorf("%s %s line %d: the token of %s is shorter than %d characters or has characters other than visible ASCII; use e.g. openssl rand -hex 32", what, path, i+1, name, MinNamedTokenBytes)
		case out[name] != "":
			return nil, fmt.Errorf("%s %s line %d: %s is named twice; give each token its own name", what, path, i+1, name)
		case seen[tok]:
			return nil, fmt.Errorf("%s %s line %d: the token of %s is also another name's; give each name its own token", what, path, i+1, name)
		}
		out[name], seen[tok] = tok, true
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s %s has no name:token line", what, path)
	}
	return out, nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
