package explore

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/store"
)

// csvHeader is the header row of records.md.
var csvHeader = []string{"time", "request_id", "method", "host", "path", "route", "status", "duration_ms",
	"request_bytes", "response_bytes", "client_ip", "user_agent", "user", "role", "flows", "malicious", "params"}

func (h *Handler) csv(w http.ResponseWriter, r *http.Request) error {
	q, session, part, release, err := h.export(r)
	if err != nil {
		return err
	}
	defer release()
	var cw *csv.Writer
	row := make([]string, len(csvHeader))
	err = h.store.EachRequest(r.Context(), session, part, q.filter, func(rec *record.Request) error {
		if cw == nil {
			cw = startCSV(w, session, part)
		}
		csvRow(row, rec)
		return cw.Write(row)
	})
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound(fmt.Sprintf("no session part %s/%s; it may have passed the retention", quote(session), quote(part)))
	}
	if cw == nil && err == nil {
		// A part whose requests the filters all leave out: the header row alone.
		cw = startCSV(w, session, part)
	}
	if cw == nil {
		return err
	}
	cw.Flush()
	if err != nil || cw.Error() != nil {
		// The status line is out; the truncated body is what the client gets. Log it once.
		h.log.Warn("csv export interrupted", "session", safeName(session), "error", errors.Join(err, cw.Error()).Error())
	}
	return nil
}

func startCSV(w http.ResponseWriter, session, part string) *csv.Writer {
	hd := w.Header()
	hd.Set("Content-Type", "text/csv; charset=utf-8")
	hd.Set("Content-Disposition", `attachment; filename="`+safeName(session)+"_"+safeName(part)+`.csv"`)
	w.WriteHeader(http.StatusOK)
	cw := csv.NewWriter(w)
	_ = cw.Write(csvHeader)
	return cw
}

// csvRow fills row with rec's cells, each neutralised for spreadsheets.
func csvRow(row []string, rec *record.Request) {
	params := ""
	if len(rec.Params) > 0 {
		b, _ := json.Marshal(rec.Params)
		params = string(b)
	}
	cells := [...]string{
		rec.Time.String(), rec.RequestID, rec.Method, rec.Host, rec.Path, rec.Route,
		strconv.Itoa(rec.Status), strconv.FormatFloat(rec.DurationMS, 'f', -1, 64),
		strconv.FormatInt(rec.RequestBytes, 10), strconv.FormatInt(rec.ResponseBytes, 10),
		rec.ClientIP, rec.UserAgent, rec.User, rec.Role, strings.Join(rec.Flows, ";"),
		strconv.FormatBool(rec.Malicious), params,
	}
	for i, c := range cells {
		row[i] = neutralise(c)
	}
}

// neutralise prefixes with "'" a cell that a spreadsheet could evaluate as a formula, so that
// it shows as text. That is a cell whose first visible character starts a formula: =, +, - or @
// (OWASP's CSV injection list), or one of their compatibility look-alikes, which some
// spreadsheets fold to the ASCII character (formulaStart). Spreadsheets ignore leading spaces,
// control and zero-width characters (NUL, NBSP, U+200B, a byte order mark, ...) before such a
// character, so those are skipped; tab, carriage return and line feed start a formula cell in
// some programs and are neutralised wherever they come first. Quoting of commas, quotes and
// newlines is encoding/csv's.
func neutralise(s string) string {
	for _, r := range s {
		switch {
		case formulaStart(r):
			return "'" + s
		case invisible(r):
			continue
		}
		return s
	}
	return s
}

// formulaStart reports whether r starts a formula: the OWASP list (=, +, -, @, tab, carriage
// return) with line feed, and every character whose compatibility form (Unicode NFKC) begins
// with =, + , - or @: the full-width, small, superscript and subscript forms and U+FB29. The
// fuzz target FuzzNeutralise checks the list against NFKC itself.
func formulaStart(r rune) bool {
	switch r {
	case '=', '+', '-', '@', '\t', '\r', '\n',
		'\uFF1D', '\uFF0B', '\uFF0D', '\uFF20', // full-width ＝ ＋ － ＠
		'\uFE66', '\uFE62', '\uFE63', '\uFE6B', // small ﹦ ﹢ ﹣ ﹫
		'\u207C', '\u207A', '\u208C', '\u208A', // superscript and subscript = and +
		'\u2A75', '\u2A76', // two and three consecutive equals signs
		'\uFB29': // Hebrew alternative plus sign
		return true
	}
	return false
}

// invisible reports whether a spreadsheet may skip r before the first character it reads:
// white space (NBSP and the other Unicode spaces among it), control characters (NUL), format
// characters (zero-width space and joiners, byte order mark, direction marks), the other
// default-ignorable code points (such as the Hangul fillers) and variation selectors. Bytes
// that are not UTF-8 count as invisible too: a reader may drop them.
func invisible(r rune) bool {
	return r == utf8.RuneError || unicode.IsSpace(r) || unicode.IsControl(r) ||
		unicode.In(r, unicode.Cf, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector)
}

// safeName keeps the characters a session id or part name is made of, so the file name in
// Content-Disposition can never break out of its quotes or name a path.
func safeName(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 64; i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "part"
	}
	return b.String()
}

// export starts an export of a part (CSV, HAR): its filters, its session and part, and a
// place among the heavy queries, which release gives back.
func (h *Handler) export(r *http.Request) (q query, session, part string, release func(), err error) {
	if q, err = parseQuery(r.URL.Query(), csvFilters, 0); err != nil {
		return q, "", "", nil, err
	}
	if release, err = h.heavy.acquire(r.Context(), clientOf(r), false); err != nil {
		return q, "", "", nil, err
	}
	return q, r.PathValue("session"), r.PathValue("part"), release, nil
}
