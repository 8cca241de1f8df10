package config

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a configuration, located in its file.
type Problem struct {
	// File is the configuration file ("" for a configuration built in code).
	File string
	// Line is the 1-based line in File, 0 when the problem concerns a default value.
	Line int
	// Path is the key path, e.g. "parameters[2].path"; "" for the top level.
	Path string
	// Message says what is wrong and how to fix it. It never contains a secret value.
	Message string
}

// String renders the problem as "FILE:LINE: key.path: message".
func (p Problem) String() string {
	var b strings.Builder
	switch {
	case p.File != "" && p.Line > 0:
		b.WriteString(p.File)
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(p.Line))
		b.WriteString(": ")
	case p.File != "":
		b.WriteString(p.File)
		b.WriteString(": ")
	case p.Line > 0:
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(p.Line))
		b.WriteString(": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Errors is every problem found in a configuration, in file order. Load, Parse and Validate
// return it (as *Errors) for content problems, so that a caller can tell an invalid file
// (errors.As succeeds) from an unreadable one (errors.Is(err, fs.ErrNotExist) and the like).
type Errors struct {
	Problems []Problem
}

// Error returns one line per problem, joined by newlines.
func (e *Errors) Error() string {
	return strings.Join(e.Lines(), "\n")
}

// Lines returns each problem rendered as "FILE:LINE: key.path: message".
func (e *Errors) Lines() []string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return lines
}

// newErrors sorts problems into file order (problems without a line last) and wraps them; it
// returns nil for no problems so that callers can return its result directly.
func newErrors(problems []Problem) error {
	if len(problems) == 0 {
		return nil
	}
	ps := slices.Clone(problems)
	slices.SortStableFunc(ps, func(a, b Problem) int {
		switch {
		case a.Line == b.Line:
			return 0
		case a.Line == 0:
			return 1
		case b.Line == 0:
			return -1
		}
		return cmp.Compare(a.Line, b.Line)
	})
	return &Errors{Problems: ps}
}
