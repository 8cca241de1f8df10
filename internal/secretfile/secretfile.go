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
