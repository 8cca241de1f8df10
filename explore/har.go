package explore

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/apisessions/apisessions/internal/har"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/store"
)

// harCreator is log.creator.name of an export; the HAR reader (sessions/traffic/recorded)
// knows an export by it and replays its entries as the sessions they name.
const harCreator = "apisessions"

// harEntry is one request of an export: HAR 1.2's fields, filled with what the store keeps
// (headers, cookies and bodies are not kept, except the content of a malicious request), and
// custom fields, prefixed "_", for what apisessions found. Hashed values stay hashed.
type harEntry struct {
	har.Entry
	Session       string            `json:"_session"`
	Part          string            `json:"_part"`
	RequestID     string            `json:"_requestId,omitempty"`
	Route         string            `json:"_route,omitempty"`
	Key           string            `json:"_key"`
	ClientIP      string            `json:"_clientIP,omitempty"`
	JA3           string            `json:"_ja3,omitempty"`
	JA4           string            `json:"_ja4,omitempty"`
	User          string            `json:"_user,omitempty"`
	Role          string            `json:"_role,omitempty"`
	ClaimedUser   string            `json:"_claimedUser,omitempty"`
	ClaimedRole   string            `json:"_claimedRole,omitempty"`
	Flows         []string          `json:"_flows,omitempty"`
	Params        map[string]string `json:"_params,omitempty"`
	RequestBytes  int64             `json:"_requestBytes"`
	ResponseBytes int64             `json:"_responseBytes"`
	Malicious     bool              `json:"_malicious,omitempty"`
	Attack        *record.Attack    `json:"_attack,omitempty"`
	Protection    *record.Verdict   `json:"_protection,omitempty"`
	ContinuedFrom *record.Continued `json:"_continuedFrom,omitempty"`
	Partial       bool              `json:"_partial,omitempty"`
}

// har streams one session part as a HAR 1.2 log, one entry per stored request, in the
// store's order, through the same filters and heavy-query limits as the CSV export.
func (h *Handler) har(w http.ResponseWriter, r *http.Request) error {
	q, session, part, release, err := h.export(r)
	if err != nil {
		return err
	}
	defer release()
	var bw *bufio.Writer
	n := 0
	err = h.store.EachRequest(r.Context(), session, part, q.filter, func(rec *record.Request) error {
		if bw == nil {
			bw = h.startHAR(w, session, part)
		}
		b, err := json.Marshal(harEntryOf(rec))
		if err != nil {
			return err
		}
		if n > 0 {
			_ = bw.WriteByte(',')
		}
		n++
		_, err = bw.Write(b)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound(fmt.Sprintf("no session part %s/%s; it may have passed the retention", quote(session), quote(part)))
	}
	if bw == nil && err == nil {
		// The filters left every request out: a valid log without entries.
		bw = h.startHAR(w, session, part)
	}
	if bw == nil {
		return err
	}
	if err == nil {
		// The log is closed only when complete: an interrupted export does not parse.
		_, _ = bw.WriteString("]}}\n")
	}
	if ferr := bw.Flush(); err != nil || ferr != nil {
		h.log.Warn("har export interrupted", "session", safeName(session), "error", errors.Join(err, ferr).Error())
	}
	return nil
}

// startHAR writes the status line, the headers and the log up to its entries.
func (h *Handler) startHAR(w http.ResponseWriter, session, part string) *bufio.Writer {
	hd := w.Header()
	hd.Set("Content-Type", "application/json; charset=utf-8")
	hd.Set("Content-Disposition", `attachment; filename="`+safeName(session)+"_"+safeName(part)+`.har"`)
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	creator, _ := json.Marshal(har.Creator{Name: harCreator, Version: h.version})
	_, _ = bw.WriteString(`{"log":{"version":"1.2","creator":`)
	_, _ = bw.Write(creator)
	_, _ = bw.WriteString(`,"pages":[],"entries":[`)
	return bw
}

// harEntryOf is the export of one stored request. The URL is the stored scheme, host and path
// (the store keeps no query string); the request headers are the user agent and, for a
// malicious request, the headers kept of it, whose body becomes postData.
func harEntryOf(rec *record.Request) *harEntry {
	e := &harEntry{
		Entry: har.Entry{
			StartedDateTime: rec.Time.String(),
			Time:            rec.DurationMS,
			Timings:         har.Timings{Send: 0, Wait: rec.DurationMS, Receive: 0},
		},
		Session: rec.Session, Part: rec.Part, RequestID: rec.RequestID, Route: rec.Route,
		Key:      rec.Key.String(),
		ClientIP: rec.ClientIP,
		JA3:      rec.JA3, JA4: rec.JA4,
		User: rec.User, Role: rec.Role, ClaimedUser: rec.ClaimedUser, ClaimedRole: rec.ClaimedRole,
		Flows:         rec.Flows,
		Params:        rec.Params,
		RequestBytes:  rec.RequestBytes,
		ResponseBytes: rec.ResponseBytes,
		Malicious:     rec.Malicious,
		Attack:        rec.Attack,
		Protection:    rec.Protection,
		ContinuedFrom: rec.ContinuedFrom,
		Partial:       rec.Partial,
	}
	e.Request = har.Request{
		Method:      rec.Method,
		URL:         cmp.Or(rec.Scheme, "https") + "://" + cmp.Or(rec.Host, "unknown") + cmp.Or(rec.Path, "/"),
		HTTPVersion: "",
		Headers:     []har.NV{},
		QueryString: []har.NV{},
		Cookies:     []har.NV{},
		HeadersSize: -1,
		BodySize:    rec.RequestBytes,
	}
	if rec.Query != "" {
		// The query as the record keeps it: hashed and scrubbed values in their stored form.
		e.Request.URL += "?" + rec.Query
		for _, kv := range strings.Split(rec.Query, "&") {
			k, v, _ := strings.Cut(kv, "=")
			e.Request.QueryString = append(e.Request.QueryString, har.NV{Name: k, Value: v})
		}
	}
	if a := rec.Attack; a != nil && rec.Malicious {
		names := make([]string, 0, len(a.Headers))
		for name := range a.Headers {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			e.Request.Headers = append(e.Request.Headers, har.NV{Name: name, Value: a.Headers[name]})
		}
		if a.Body != "" {
			e.Request.PostData = &har.PostData{MimeType: a.Headers["content-type"], Text: a.Body}
		}
	}
	if rec.UserAgent != "" && !slices.ContainsFunc(e.Request.Headers, func(h har.NV) bool { return strings.EqualFold(h.Name, "user-agent") }) {
		e.Request.Headers = append(e.Request.Headers, har.NV{Name: "user-agent", Value: rec.UserAgent})
	}
	e.Response = har.Response{
		Status:      rec.Status,
		StatusText:  http.StatusText(rec.Status),
		HTTPVersion: "",
		Headers:     []har.NV{},
		Cookies:     []har.NV{},
		Content:     har.Content{Size: rec.ResponseBytes, MimeType: ""},
		HeadersSize: -1,
		BodySize:    rec.ResponseBytes,
	}
	return e
}
