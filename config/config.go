package config

import "time"

// Config is the whole configuration file as users write it (see the spec's config.md).
type Config struct {
	Server        Server        `yaml:"server"`
	Traffic       Traffic       `yaml:"traffic"`
	Sessions      Sessions      `yaml:"sessions"`
	Parameters    []Parameter   `yaml:"parameters"`
	MaxParameters int           `yaml:"max_parameters"`
	BusinessFlows BusinessFlows `yaml:"business_flows"`
	TLS           TLS           `yaml:"tls"`
	Attacks       Attacks       `yaml:"attacks"`
	Inline        Inline        `yaml:"inline"`
	Hashing       Hashing       `yaml:"hashing"`
	Sinks         []Sink        `yaml:"sinks"`
	State         State         `yaml:"state"`
	Protection    Protection    `yaml:"protection"`

	// File is the path the configuration was loaded from ("" for defaults only). Not a YAML key.
	File string `yaml:"-"`
	// Positions maps the key path of every key and list item written in File
	// ("sessions.retention", "parameters[2].path", "sinks[0]") to where it was written, so that
	// messages can name the line. Nil when nothing was read from a file. Not a YAML key.
	Positions map[string]Position `yaml:"-"`
}

// Position is where a key or list item was written in the configuration file.
type Position struct {
	Line int
	// Env is true when the value came through ${VAR} expansion: messages never echo it.
	Env bool
}

// Server holds the listeners and their protection.
type Server struct {
	// GRPCListen is the ext_proc listener; loopback by default.
	GRPCListen string `yaml:"grpc_listen"`
	// HTTPListen serves health, readiness, metrics, the explore API and the UI; loopback by default.
	HTTPListen string  `yaml:"http_listen"`
	GRPCTLS    GRPCTLS `yaml:"grpc_tls"`
	// APITokenFile holds the token the explore API, the UI and /metrics require.
	APITokenFile string `yaml:"api_token_file"`
	// WriteTokensFile holds the named tokens ("name:token" a line) that the API's writes
	// (manual blocks) require; without it the API takes no writes. The name goes into the
	// audit log.
	WriteTokensFile string `yaml:"write_tokens_file"`
	// AllowUnauthenticatedAPI lets an HTTP listener that other machines can reach run without
	// an API token.
	AllowUnauthenticatedAPI bool `yaml:"allow_unauthenticated_api"`
	// AllowedHosts are the Host header values the HTTP listener answers besides loopback
	// names: host name globs, IP addresses or IP prefixes (10.0.0.0/8).
	AllowedHosts []string `yaml:"allowed_hosts"`
	// MetricsListen, when set, serves /metrics on a listener of its own, without token or Host
	// check, and the HTTP listener stops serving it.
	MetricsListen string `yaml:"metrics_listen"`
	// GRPCTokenFile holds the token every gRPC call but health must carry as
	// "authorization: Bearer <token>" metadata (Envoy's grpc_service.initial_metadata).
	GRPCTokenFile string `yaml:"grpc_token_file"`
	// AllowUnauthenticatedGRPC lets a gRPC listener that other machines can reach run without
	// mTLS or a token: for networks where something else decides who connects.
	AllowUnauthenticatedGRPC bool `yaml:"allow_unauthenticated_grpc"`
	// GRPCReflection registers gRPC server reflection on the gRPC listener.
	GRPCReflection bool `yaml:"grpc_reflection"`
	// DataDir holds the generated hash key and, for the store, its files.
	DataDir string `yaml:"data_dir"`
	// MaxConcurrentStreams bounds the ext_proc streams one Envoy connection may open; Envoy
	// opens another connection when one is full.
	MaxConcurrentStreams uint32 `yaml:"max_concurrent_streams"`
	// MaxStreams bounds the ext_proc streams open at once over all connections; a stream past
	// it is refused with RESOURCE_EXHAUSTED.
	MaxStreams int `yaml:"max_streams"`
	// StreamIdleTimeout ends an ext_proc stream that received no message for this long; what
	// it saw is recorded as a cut exchange.
	StreamIdleTimeout Duration `yaml:"stream_idle_timeout"`
	// MaxMessageBytes bounds one ext_proc message the server accepts.
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// MemoryLimitBytes is the resident memory the process may take: Go's soft memory limit is
	// set to 70 % of it, and ext_proc streams stop keeping bodies, then new ones are refused,
	// as the process nears it. 0 means GOMEMLIMIT when set, else 90 % of the container's memory
	// limit when there is one, else none.
	MemoryLimitBytes int `yaml:"memory_limit_bytes"`
	// ShutdownTimeout bounds how long a shutdown waits for streams to drain and sinks to flush.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
}

// GRPCTLS is optional TLS (and mTLS when ClientCAFile is set) on the gRPC listener.
type GRPCTLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// Traffic says which traffic is analysed and how much of it is read.
type Traffic struct {
	Hosts        Hosts `yaml:"hosts"`
	MaxBodyBytes int   `yaml:"max_body_bytes"`
	// BodyBudgetBytes bounds the body bytes all open streams keep together; a body that does
	// not fit is not kept (its request is still recorded).
	BodyBudgetBytes int      `yaml:"body_budget_bytes"`
	ClientIP        ClientIP `yaml:"client_ip"`
}

// Hosts selects applications by :authority (port stripped) with glob patterns.
type Hosts struct {
	Include []string `yaml:"include"`
	Exclude []string `yaml:"exclude"`
}

// ClientIP says where the client address comes from.
type ClientIP struct {
	// From is "source" (Envoy's source.address attribute) or a header name such as x-forwarded-for.
	From        string `yaml:"from"`
	TrustedHops int    `yaml:"trusted_hops"`
}

// Sessions holds the grouping, splitting and retention rules.
type Sessions struct {
	BuiltinKeys bool     `yaml:"builtin_keys"`
	Fallback    []string `yaml:"fallback"`
	DayBoundary string   `yaml:"day_boundary"`
	IdleTimeout Duration `yaml:"idle_timeout"`
	Retention   Duration `yaml:"retention"`
	// MaxLiveParts bounds the table of live session parts held in memory; the least recently
	// used part is ended (its final session record emitted) when the table is full.
	MaxLiveParts int `yaml:"max_live_parts"`
	// LookupCacheMB bounds the cache of recomputable lookups (decoded JWT claims).
	LookupCacheMB int `yaml:"lookup_cache_mb"`
	// SnapshotInterval is how often a live part that changed emits its session record.
	SnapshotInterval Duration `yaml:"snapshot_interval"`
	// UsersFrom says which requests name a session's user and role: UsersFromSucceeded (the
	// default: a request answered 4xx or 5xx only claims them) or UsersFromAny.
	UsersFrom string `yaml:"users_from"`
	// Stitch says which kinds of link join the values of one client's identifier.
	Stitch Stitch `yaml:"stitch"`
	// Risk weighs the signals of a part's risk score and says how fast they fade.
	Risk Risk `yaml:"risk"`
}

// Risk is the model of a session part's risk score (0 to 100): each signal a request shows
// adds its weight in points, and every point loses half its worth each HalfLife.
type Risk struct {
	// HalfLife is how long a signal's points take to lose half their worth.
	HalfLife Duration `yaml:"half_life"`
	// Weights are the points one request adds per signal.
	Weights RiskWeights `yaml:"weights"`
	// AttackTypes weigh a malicious request by its attack types (the highest of its types),
	// instead of Weights.Malicious.
	AttackTypes map[string]int `yaml:"attack_types"`
}

// RiskWeights are the points (whole numbers) of each risk signal; 0 turns a signal off.
type RiskWeights struct {
	// Malicious: a request an attack verdict calls malicious.
	Malicious int `yaml:"malicious"`
	// Protection: a verdict of a protection rule (dry runs included; manual blocks are not).
	Protection int `yaml:"protection"`
	// Denied: a response 401 or 403 from the API.
	Denied int `yaml:"denied"`
	// NotFound: a response 404.
	NotFound int `yaml:"not_found"`
	// FailedClaim: a request answered 4xx or 5xx that named a user (claimed_user).
	FailedClaim int `yaml:"failed_claim"`
}

// Risk defaults and limits.
const (
	DefaultRiskHalfLife = Duration(10 * time.Minute)
	// RiskHalfLifeMin keeps a day of signals within the range of a float64 (risk.Model).
	RiskHalfLifeMin = Duration(2 * time.Minute)
	RiskHalfLifeMax = Duration(24 * time.Hour)
	riskWeightMax   = 1000
)

// DefaultRiskWeights are the points of each signal when the file leaves sessions.risk.weights
// out.
var DefaultRiskWeights = RiskWeights{Malicious: 40, Protection: 20, Denied: 10, NotFound: 3, FailedClaim: 15}

// The values of sessions.users_from.
const (
	UsersFromSucceeded = "succeeded"
	UsersFromAny       = "any"
)

// Stitch turns each kind of stitching on or off and bounds the table of links.
type Stitch struct {
	// Rotation links a value a response issues to the session of the identifier its request
	// carried (rotated session cookies, refreshed tokens).
	Rotation bool `yaml:"rotation"`
	// Login links a value a response issues to the anonymous session (fallback key or a
	// first-party cookie) of the request that received it.
	Login bool `yaml:"login"`
	// MaxLinks bounds the links held in memory; the least recently used goes first.
	MaxLinks int `yaml:"max_links"`
}

// Parameter is one session context parameter; with Group it is also a grouping key.
type Parameter struct {
	Name   string `yaml:"name"`
	In     string `yaml:"in"`
	Key    string `yaml:"key"`
	Path   string `yaml:"path"`
	Decode string `yaml:"decode"`
	Group  bool   `yaml:"group"`
	Hashed bool   `yaml:"hashed"`
	Type   string `yaml:"type"`
	// Hidden parameters are registered by other components: exported when seen, not counted
	// against MaxParameters. Not a YAML key.
	Hidden bool `yaml:"-"`

	// Line is the line of the parameter in the file, for messages. Not a YAML key.
	Line int `yaml:"-"`
}

// Sources a parameter may read (Parameter.In).
const (
	InRequestHeader  = "request.header"
	InRequestCookie  = "request.cookie"
	InRequestQuery   = "request.query"
	InRequestBody    = "request.body"
	InRequestPath    = "request.path"
	InResponseHeader = "response.header"
	InResponseCookie = "response.cookie"
	InResponseBody   = "response.body"
)

// Decodings a parameter may apply (Parameter.Decode).
const (
	DecodeJWT    = "jwt"
	DecodeJSON   = "json"
	DecodeBase64 = "base64"
)

// Parameter types (Parameter.Type).
const (
	TypeUser = "user"
	TypeRole = "role"
)

// BusinessFlows tags requests with sensitive business flows.
type BusinessFlows struct {
	Builtin bool       `yaml:"builtin"`
	Rules   []FlowRule `yaml:"rules"`
}

// FlowRule tags requests matching method, host and path with a flow.
type FlowRule struct {
	Flow    string   `yaml:"flow"`
	Methods []string `yaml:"methods"`
	Host    string   `yaml:"host"`
	Path    string   `yaml:"path"`
	Line    int      `yaml:"-"`
}

// Flows lists the sensitive business flows, in the order the UI shows them.
var Flows = []string{"ai_llm", "account_creation", "account_management", "admin", "auth", "billing", "sms_gateway"}

// TLS names the request headers in which Envoy passes TLS fingerprints.
type TLS struct {
	JA3Header string `yaml:"ja3_header"`
	JA4Header string `yaml:"ja4_header"`
}

// Attacks says where attack verdicts of other Envoy filters are read, and which fields the
// kept content of a malicious request hides.
type Attacks struct {
	Metadata       []AttackMetadata `yaml:"metadata"`
	ResponseHeader string           `yaml:"response_header"`
	ScrubFields    ScrubFields      `yaml:"scrub_fields"`
}

// ScrubFields names the fields whose values the content of a malicious request carries in
// hashed form although no hashed parameter reads them: JSON members, form fields, query
// parameters, cookies and headers, matched by name (docs/configuration.md "Attack verdicts").
type ScrubFields struct {
	// Defaults turns on DefaultScrubFields.
	Defaults bool `yaml:"defaults"`
	// Extra are more names, matched by the same rule.
	Extra []string `yaml:"extra"`
}

// DefaultScrubFields are the well-known names of secret fields that attacks.scrub_fields.defaults
// hides. A name matches a field whose name, lower-cased and without "-" and "_", equals it or
// ends with it (written the same way): "password" matches newPassword and x-password, "token"
// matches csrf_token and X-Auth-Token.
var DefaultScrubFields = []string{
	"password", "passwd", "pwd", "passphrase", "secret", "token", "access_token",
	"refresh_token", "id_token", "api_key", "apikey", "authorization", "credentials",
	"private_key", "client_secret", "otp", "cvv", "cvc", "card_number",
}

// AttackMetadata reads a verdict from one dynamic metadata namespace.
type AttackMetadata struct {
	Namespace string `yaml:"namespace"`
	Key       string `yaml:"key"`
	TypesKey  string `yaml:"types_key"`
	RulesKey  string `yaml:"rules_key"`
}

// Inline configures what apisessions adds in inline (non-observability) mode.
type Inline struct {
	SessionHeader   string `yaml:"session_header"`
	DynamicMetadata bool   `yaml:"dynamic_metadata"`
}

// Hashing says where the HMAC key comes from.
type Hashing struct {
	KeyFile string `yaml:"key_file"`
}

// Duration is a time.Duration written in Go syntax ("30m", "168h").
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }
