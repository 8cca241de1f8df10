// Package extract reads parameter values out of one traffic.Exchange: headers, cookies,
// set-cookie, query strings, urlencoded forms, JSON bodies (ojg JSONPath), path captures, and
// decoded values (JWT payloads, JSON, base64). Every input is attacker-written: nothing here
// panics, allocates without bound or echoes a value into an error.
//
// It imports config and sessions/traffic only.
package extract

// CONTRACT (being implemented; the signatures below are fixed, bodies are filled in):
//
//   type Side uint8; const (Request Side = iota; Response)
//
//   // Cache holds recomputable lookups (decoded, unverified JWT claims) in a ristretto cache
//   // keyed by a keyed hash of the token, never by the token. A miss means recompute.
//   func NewCache(maxBytes int64) (*Cache, error)
//   func (c *Cache) Close()
//
//   // View is one Exchange as extractors read it: each body parsed at most once, cookies,
//   // set-cookies and the query parsed lazily. Not safe for concurrent use; one per exchange.
//   func NewView(x *traffic.Exchange, c *Cache, maxBodyBytes int) *View
//   func (v *View) Exchange() *traffic.Exchange
//   func (v *View) Header(side Side, name string) (string, bool)   // name lower case; first non-empty value
//   func (v *View) Cookie(name string) (string, bool)              // request Cookie header(s)
//   func (v *View) SetCookie(name string) (string, bool)           // response set-cookie headers
//   func (v *View) Query(name string) (string, bool)               // URL-decoded
//   func (v *View) UnverifiedClaims(token string) (any, bool)      // JWT payload; "Bearer " stripped; cached
//   func (v *View) Release()                                       // return pooled state
//
//   // Extractor reads one configured parameter. Immutable, safe for concurrent use.
//   func Compile(p config.Parameter) (*Extractor, error)
//   func (e *Extractor) Name() string
//   func (e *Extractor) Side() Side
//   func (e *Extractor) NeedsBody() bool
//   // Extract returns the value when the parameter works for this exchange: its source is
//   // present and yields a non-empty scalar (string, number, bool as text; objects and arrays
//   // as canonical JSON with sorted keys).
//   func (e *Extractor) Extract(v *View) (string, bool)
//
//   // Scalar renders a decoded JSON value as Extract does.
//   func Scalar(val any) (string, bool)
