package redact

import (
	"encoding/base64"
	"mime"
	"slices"
	"strings"

	"github.com/apisessions/apisessions/sessions/extract"
	"github.com/apisessions/apisessions/sessions/traffic"
)

// maxLearnt bounds the values Learn adds: a request naming thousands of secret fields is
// hostile, and each learnt value is searched for in every other value of the content.
const maxLearnt = 64

// Learn adds to the secrets the values the request carries at the places t names — the
// credentials of authorization headers (a Basic pair, its password too), the built-in session
// cookies and headers, the fields Scrub names in headers, cookies, the query and the body,
// and the JSON members hashed body parameters read, found by name in a body too long or too
// broken to parse — so that the content of a malicious request hides them wherever else they
// occur, in any encoding. Only whole values of at least minScrubLen bytes are learnt: a value
// a cut shortened is hidden where it stands (AttackContent), and a short one only where it is
// the whole value. maxBody is the cap of the kept body (0: none).
func (r *Redactor) Learn(x *traffic.Exchange, t *Targets, maxBody int) {
	if r == nil {
		return
	}
	for _, h := range x.RequestHeaders {
		name := strings.ToLower(h.Name)
		switch {
		case slices.Contains(credentialHeaders, name):
			r.learnCredentials(h.Value)
		case name == "cookie":
			for part := range strings.SplitSeq(h.Value, ";") {
				name, val, _ := strings.Cut(strings.TrimSpace(part), "=")
				if slices.Contains(t.Cookies, name) || t.Scrub.Match(name) {
					r.learn(strings.Trim(val, `"`))
				}
			}
		case slices.Contains(t.Headers, name) || !strings.HasPrefix(name, ":") && t.Scrub.Match(name):
			r.learn(h.Value)
		default:
			if _, cred, ok := basicCredentials(h.Value); ok {
				r.learnCredentials("Basic " + cred)
			}
		}
	}
	if _, q, ok := strings.Cut(x.Path, "?"); ok {
		for name, val := range pairs(q, false) {
			if slices.Contains(t.Queries, name) || t.Scrub.Match(name) {
				r.learn(val)
			}
		}
	}
	r.learnBody(x, t, maxBody)
}

// learnCredentials learns the credentials of an authorization value: the token of any
// scheme, and for Basic the decoded "user:password" and the password.
func (r *Redactor) learnCredentials(val string) {
	scheme, cred, ok := strings.Cut(strings.TrimSpace(val), " ")
	if !ok {
		r.learn(val)
		return
	}
	cred = strings.TrimSpace(cred)
	r.learn(cred)
	if !strings.EqualFold(scheme, "basic") {
		return
	}
	dec, err := base64.StdEncoding.DecodeString(cred)
	if err != nil {
		return
	}
	r.learn(string(dec))
	if _, pass, ok := strings.Cut(string(dec), ":"); ok {
		r.learn(pass)
	}
}

// learnBody learns the values of the body fields t names: from the parsed JSON document,
// the form pairs (the last one of a cut form left out) or multipart parts, and, in JSON text
// that does not parse, the members found by their key.
func (r *Redactor) learnBody(x *traffic.Exchange, t *Targets, maxBody int) {
	body := x.RequestBody
	if maxBody > 0 && len(body) > maxBody {
		body = body[:maxBody]
	}
	if len(body) == 0 {
		return
	}
	cut := x.RequestBodyTruncated || len(body) < len(x.RequestBody)
	ct, _ := x.RequestHeader("content-type")
	mt, params, _ := mime.ParseMediaType(ct)
	switch {
	case mt == "application/x-www-form-urlencoded":
		for name, val := range pairs(string(body), cut) {
			if slices.Contains(t.Forms, name) || t.Scrub.Match(name) {
				r.learn(val)
			}
		}
		return
	case mt == "multipart/form-data" && params["boundary"] != "":
		for m := range multipartMembers(string(body), params["boundary"], t.bodyField) {
			if m.complete {
				r.learn(m.value)
			}
		}
		return
	}
	if doc, ok := r.jsonDoc(); ok && !cut {
		budget := 4096
		r.learnJSON(doc, t, &budget)
		return
	}
	for m := range jsonMembers(string(body), t.bodyField) {
		if m.complete {
			r.learn(m.value)
		}
	}
}

// jsonDoc is the request body parsed as JSON, when it is JSON, whole and within the cap;
// false without the exchange's View.
func (r *Redactor) jsonDoc() (any, bool) {
	if r.view == nil {
		return nil, false
	}
	return r.view.JSONBody(extract.Request)
}

// learnJSON learns the values of the members of a parsed document whose key Scrub names,
// visiting at most budget nodes.
func (r *Redactor) learnJSON(doc any, t *Targets, budget *int) {
	if *budget--; *budget < 0 {
		return
	}
	switch v := doc.(type) {
	case map[string]any:
		for k, e := range v {
			if t.Scrub.Match(k) {
				if s, ok := extract.Scalar(e); ok {
					r.learn(s)
				}
				continue
			}
			r.learnJSON(e, t, budget)
		}
	case []any:
		for _, e := range v {
			r.learnJSON(e, t, budget)
		}
	}
}

// learn adds v as a secret, hashed as a hashed parameter would be.
func (r *Redactor) learn(v string) {
	if len(v) < minScrubLen || r.learnt >= maxLearnt {
		return
	}
	if r.add(v, r.hash(v)) {
		r.learnt++
	}
}
