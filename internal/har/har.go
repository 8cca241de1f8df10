// Package har holds the HAR 1.2 document types that apisessions writes: the session export of
// the explore API and the demo recording's generator. Their JSON is the field order and names
// of the HAR 1.2 specification; writers add custom fields (prefixed "_") by embedding Entry.
//
// Reading is not done with these types: the reader of recordings (sessions/traffic/recorded)
// takes HAR files written by any tool, so it accepts what they get wrong (numbers as strings,
// missing lists) and bounds what it keeps.
package har

// Log is a HAR document.
type Log struct {
	Log Body `json:"log"`
}

// Body is a HAR document's log object.
type Body struct {
	Version string  `json:"version"`
	Creator Creator `json:"creator"`
	Pages   []any   `json:"pages"`
	Entries []Entry `json:"entries"`
}

// Creator names the tool that wrote a log.
type Creator struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Entry is one exchange. StartedDateTime is an ISO 8601 time; Time is in milliseconds.
type Entry struct {
	StartedDateTime string   `json:"startedDateTime"`
	Time            float64  `json:"time"`
	Request         Request  `json:"request"`
	Response        Response `json:"response"`
	Cache           struct{} `json:"cache"`
	Timings         Timings  `json:"timings"`
	ServerIPAddress string   `json:"serverIPAddress,omitempty"`
}

// NV is a name and a value: a header, a cookie, a query or form parameter.
type NV struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Request is an entry's request. Lists are never null in a valid log: use empty lists.
type Request struct {
	Method      string    `json:"method"`
	URL         string    `json:"url"`
	HTTPVersion string    `json:"httpVersion"`
	Cookies     []NV      `json:"cookies"`
	Headers     []NV      `json:"headers"`
	QueryString []NV      `json:"queryString"`
	PostData    *PostData `json:"postData,omitempty"`
	HeadersSize int       `json:"headersSize"`
	BodySize    int64     `json:"bodySize"`
}

// PostData is a request's body: its text, or its parameters when form-encoded (HAR 1.2 makes
// the two exclusive).
type PostData struct {
	MimeType string `json:"mimeType"`
	Params   []NV   `json:"params,omitempty"`
	Text     string `json:"text"`
}

// Response is an entry's response.
type Response struct {
	Status      int     `json:"status"`
	StatusText  string  `json:"statusText"`
	HTTPVersion string  `json:"httpVersion"`
	Cookies     []NV    `json:"cookies"`
	Headers     []NV    `json:"headers"`
	Content     Content `json:"content"`
	RedirectURL string  `json:"redirectURL"`
	HeadersSize int     `json:"headersSize"`
	BodySize    int64   `json:"bodySize"`
}

// Content is a response's body.
type Content struct {
	Size     int64  `json:"size"`
	MimeType string `json:"mimeType"`
	Text     string `json:"text,omitempty"`
}

// Timings splits an entry's time in milliseconds.
type Timings struct {
	Send    float64 `json:"send"`
	Wait    float64 `json:"wait"`
	Receive float64 `json:"receive"`
}
