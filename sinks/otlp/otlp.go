package otlp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/internal/tlsclient"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sinks"
)

// Factory creates otlp sinks from their Config.
var Factory = sinks.FactoryOf(Type, DefaultConfig, func(cfg config.Sink, c *Config, s sinks.Settings) (*Sink, error) {
	return New(cfg, *c, s)
})

// scopeName names the instrumentation scope of every log record.
const scopeName = "github.com/apisessions/apisessions"

// Sink exports batches of records as OTLP log records. Write is not meant to run concurrently
// (the pipeline calls it from one goroutine); Close may run at any time.
type Sink struct {
	log      *slog.Logger
	exp      sdklog.Exporter
	provider *sdklog.LoggerProvider
	logger   otellog.Logger
	coll     *collector
	status   *lastStatus // HTTP only: the status of the last export's answer
	now      func() time.Time

	mu     sync.Mutex
	closed bool
}

// collector is the provider's one processor: it keeps the records a batch emits, with the
// provider's resource and scope, for the sink to export them itself.
type collector struct{ recs []sdklog.Record }

func (c *collector) OnEmit(_ context.Context, r *sdklog.Record) error {
	c.recs = append(c.recs, r.Clone())
	return nil
}
func (c *collector) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }
func (c *collector) Shutdown(context.Context) error                         { return nil }
func (c *collector) ForceFlush(context.Context) error                       { return nil }

// New builds the sink that c describes. It connects lazily: a receiver that is down fails the
// first Write, not New. It fails when the endpoint or the TLS files are unusable.
func New(cfg config.Sink, c Config, s sinks.Settings) (*Sink, error) {
	u, err := url.Parse(c.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("otlp: endpoint is not an http or https URL")
	}
	logger := s.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	headers := make(map[string]string, len(c.Headers))
	for k, v := range c.Headers {
		headers[k] = v
	}
	timeout := max(cfg.Timeout.Std(), time.Second)
	sk := &Sink{log: logger, coll: &collector{}, now: time.Now}
	ctx := context.Background()
	switch c.Protocol {
	case ProtocolHTTP:
		if u.Path == "" || u.Path == "/" {
			u.Path = "/v1/logs"
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if u.Scheme == "https" {
			if tr.TLSClientConfig, err = tlsclient.Config(c.TLS); err != nil {
				return nil, fmt.Errorf("otlp: %w", err)
			}
		}
		sk.status = &lastStatus{next: tr}
		opts := []otlploghttp.Option{
			otlploghttp.WithEndpointURL(u.String()),
			otlploghttp.WithHeaders(headers),
			otlploghttp.WithTimeout(timeout),
			otlploghttp.WithRetry(otlploghttp.RetryConfig{Enabled: false}),
			otlploghttp.WithHTTPClient(&http.Client{
				Transport: sk.status,
				// Never follow: a redirect would carry the headers (credentials) elsewhere.
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			}),
		}
		if c.Compression == "gzip" {
			opts = append(opts, otlploghttp.WithCompression(otlploghttp.GzipCompression))
		} else {
			opts = append(opts, otlploghttp.WithCompression(otlploghttp.NoCompression))
		}
		if sk.exp, err = otlploghttp.New(ctx, opts...); err != nil {
			return nil, fmt.Errorf("otlp: %w", err)
		}
	default:
		opts := []otlploggrpc.Option{
			otlploggrpc.WithEndpointURL(u.Scheme + "://" + u.Host),
			otlploggrpc.WithHeaders(headers),
			otlploggrpc.WithTimeout(timeout),
			otlploggrpc.WithRetry(otlploggrpc.RetryConfig{Enabled: false}),
		}
		if u.Scheme == "https" {
			tc, err := tlsclient.Config(c.TLS)
			if err != nil {
				return nil, fmt.Errorf("otlp: %w", err)
			}
			opts = append(opts, otlploggrpc.WithTLSCredentials(credentials.NewTLS(tc)))
		} else {
			opts = append(opts, otlploggrpc.WithInsecure())
		}
		// Always set, so that no OTEL_EXPORTER_OTLP_* variable decides it.
		if c.Compression == "gzip" {
			opts = append(opts, otlploggrpc.WithCompressor("gzip"))
		} else {
			opts = append(opts, otlploggrpc.WithCompressor("none"))
		}
		if sk.exp, err = otlploggrpc.New(ctx, opts...); err != nil {
			return nil, fmt.Errorf("otlp: %w", err)
		}
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", c.ServiceName)}
	for k, v := range c.ResourceAttributes {
		attrs = append(attrs, attribute.String(k, v))
	}
	sk.provider = sdklog.NewLoggerProvider(
		sdklog.WithResource(resource.NewSchemaless(attrs...)),
		sdklog.WithProcessor(sk.coll),
	)
	sk.logger = sk.provider.Logger(scopeName)
	return sk, nil
}

// Write exports batch in one call. Records that cannot be encoded are left out and reported
// as a permanent *sinks.PartialError once the rest was accepted. A refusal the receiver says
// is final (gRPC InvalidArgument and the like; HTTP 4xx but 429) is permanent; anything else is
// worth retrying.
func (s *Sink) Write(ctx context.Context, batch []record.Record) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return sinks.ErrClosed
	}
	defer func() {
		clear(s.coll.recs)
		s.coll.recs = s.coll.recs[:0]
	}()
	observed := s.now()
	var bad int
	var badErr error
	for _, rec := range batch {
		body, err := sinks.MarshalRecord(rec)
		if err != nil {
			bad, badErr = bad+1, err
			continue
		}
		var lr otellog.Record
		fill(&lr, rec, string(body), observed)
		s.logger.Emit(ctx, lr)
	}
	if len(s.coll.recs) > 0 {
		if err := s.exp.Export(ctx, s.coll.recs); err != nil {
			if n, ok := partialSuccess(err); ok {
				// The receiver took the batch and refused n of its records for good: they are
				// counted and logged as failed, the rest as delivered, and nothing is sent again.
				if n <= 0 {
					s.log.Warn("the OTLP receiver accepted the batch with a warning", "error", err.Error())
					return nil
				}
				return &sinks.PartialError{Failed: int(min(n, int64(len(s.coll.recs)))), Err: sinks.Permanent(fmt.Errorf("otlp: %w", err))}
			}
			return s.classify(err)
		}
	}
	if bad > 0 {
		return &sinks.PartialError{Failed: bad, Err: sinks.Permanent(badErr)}
	}
	return nil
}

// partialSuccess reads how many records a receiver refused while accepting the batch (an OTLP
// partial success) from the exporter's error. Its type is internal to the SDK; its text is
// "OTLP partial success: <message> (<n> logs rejected)". Any other error, or one joined with
// another, is not a partial success.
func partialSuccess(err error) (int64, bool) {
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "OTLP partial success: ") {
		return 0, false
	}
	i := strings.LastIndex(msg, " (")
	if i < 0 {
		return 0, false
	}
	var n int64
	if _, err := fmt.Sscanf(msg[i:], " (%d logs rejected)", &n); err != nil {
		return 0, false
	}
	return n, true
}

// classify marks the refusals that sending the same records again cannot fix.
func (s *Sink) classify(err error) error {
	err = fmt.Errorf("otlp: export: %w", err)
	if s.status != nil {
		switch code := s.status.code.Swap(0); {
		case code == 0, code == http.StatusTooManyRequests, code == http.StatusRequestTimeout,
			code == http.StatusBadGateway, code == http.StatusServiceUnavailable, code == http.StatusGatewayTimeout:
			return err
		case code >= 400:
			return sinks.Permanent(err)
		}
		return err
	}
	if st, ok := status.FromError(errors.Unwrap(err)); ok {
		switch st.Code() {
		case codes.InvalidArgument, codes.Unimplemented, codes.PermissionDenied, codes.Unauthenticated,
			codes.NotFound, codes.FailedPrecondition, codes.AlreadyExists:
			return sinks.Permanent(err)
		}
	}
	return err
}

// Close shuts the exporter down, honouring ctx's deadline.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	return errors.Join(s.provider.Shutdown(ctx), s.exp.Shutdown(ctx))
}

// lastStatus is the HTTP transport of the exporter: it keeps the status of the last answer,
// which the exporter's errors do not carry in a form one can test.
type lastStatus struct {
	next http.RoundTripper
	code atomic.Int32
}

func (l *lastStatus) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := l.next.RoundTrip(r)
	if err == nil {
		l.code.Store(int32(resp.StatusCode))
	} else {
		l.code.Store(0)
	}
	return resp, err
}

// fill makes lr the log record of rec, whose JSON is body.
func fill(lr *otellog.Record, rec record.Record, body string, observed time.Time) {
	lr.SetObservedTimestamp(observed)
	lr.SetBody(attribute.StringValue(body))
	lr.SetSeverity(otellog.SeverityInfo)
	lr.SetSeverityText("INFO")
	warn := func() {
		lr.SetSeverity(otellog.SeverityWarn)
		lr.SetSeverityText("WARN")
	}
	add := func(k, v string) {
		if v != "" {
			lr.AddAttributes(attribute.String(k, v))
		}
	}
	switch r := rec.(type) {
	case *record.Request:
		lr.SetEventName("apisessions.request")
		lr.SetTimestamp(r.Time.Time)
		if r.Malicious {
			warn()
		}
		add("session.id", r.Session)
		add("apisessions.part", r.Part)
		add("apisessions.key", r.Key.String())
		add("http.request.id", r.RequestID)
		add("http.request.method", r.Method)
		add("server.address", r.Host)
		add("url.path", r.Path)
		add("http.route", r.Route)
		if r.Status != 0 {
			lr.AddAttributes(attribute.Int("http.response.status_code", r.Status))
		}
		add("client.address", r.ClientIP)
		add("user_agent.original", r.UserAgent)
		add("user.name", r.User)
		add("user.roles", r.Role)
		lr.AddAttributes(attribute.Bool("apisessions.malicious", r.Malicious))
	case *record.Session:
		lr.SetEventName("apisessions.session")
		lr.SetTimestamp(r.LastSeen.Time)
		if r.Malicious > 0 {
			warn()
		}
		add("session.id", r.Session)
		add("apisessions.part", r.Part)
		add("apisessions.key", r.Key.String())
		add("user.name", r.User)
		add("user.roles", r.Role)
		lr.AddAttributes(
			attribute.Int("apisessions.requests", r.Requests),
			attribute.Int("apisessions.malicious_requests", r.Malicious),
			attribute.Bool("apisessions.final", r.Final),
		)
		add("apisessions.end_reason", r.EndReason)
	}
}
