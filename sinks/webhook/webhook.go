package webhook

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/internal/tlsclient"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sinks"
)

// Factory creates webhook sinks from their Config.
var Factory = sinks.FactoryOf(Type, DefaultConfig, func(cfg config.Sink, c *Config, s sinks.Settings) (*Sink, error) {
	return New(cfg, *c, s)
})

const (
	dialTimeout = 10 * time.Second
	// maxDrainBytes is how much of an answer's body is read so the connection can be reused.
	maxDrainBytes = 64 << 10
	// keepBufBytes caps the buffers kept between batches.
	keepBufBytes = 4 << 20
)

// Sink posts batches to one URL. Write is not meant to run concurrently (the pipeline calls it
// from one goroutine); Close may run at any time.
type Sink struct {
	logger  *slog.Logger
	client  *http.Client
	url     string
	host    string // for errors: the URL without path or query
	headers http.Header
	gzip    bool
	now     func() time.Time

	mu     sync.Mutex
	closed bool

	body bytes.Buffer
	zbuf bytes.Buffer
	zw   *gzip.Writer
}

// New builds the sink that c describes, waiting for answers as long as the sink's write
// timeout (cfg.Timeout) allows; it fails when the TLS files cannot be loaded.
func New(cfg config.Sink, c Config, s sinks.Settings) (*Sink, error) {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("webhook: url is not an http or https URL")
	}
	logger := s.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   dialTimeout,
		ResponseHeaderTimeout: max(cfg.Timeout.Std(), time.Second),
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   2,
		ForceAttemptHTTP2:     true,
	}
	if u.Scheme == "https" {
		tc, err := tlsclient.Config(c.TLS)
		if err != nil {
			return nil, fmt.Errorf("webhook: %w", err)
		}
		tr.TLSClientConfig = tc
	}
	h := make(http.Header, len(c.Headers)+2)
	for k, v := range c.Headers {
		h.Set(k, v)
	}
	h.Set("Content-Type", "application/json")
	if c.Gzip {
		h.Set("Content-Encoding", "gzip")
	}
	sk := &Sink{
		logger: logger,
		client: &http.Client{
			Transport: tr,
			// Never follow: a redirect would carry the headers (credentials) elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		url:     c.URL,
		host:    u.Scheme + "://" + u.Host,
		headers: h,
		gzip:    c.Gzip,
		now:     time.Now,
	}
	return sk, nil
}

// Write posts batch as one JSON array. Records that cannot be encoded are left out and reported
// as a permanent *sinks.PartialError once the rest was accepted.
func (s *Sink) Write(ctx context.Context, batch []record.Record) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return sinks.ErrClosed
	}
	defer s.trimBuffers()
	skipped, encodeErr := s.encode(batch)
	if skipped == len(batch) {
		return &sinks.PartialError{Failed: skipped, Err: sinks.Permanent(encodeErr)}
	}
	payload := s.body.Bytes()
	if s.gzip {
		var err error
		if payload, err = s.compress(payload); err != nil {
			return fmt.Errorf("webhook: gzip: %w", err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(payload))
	if err != nil {
		return sinks.Permanent(errors.New("webhook: cannot build the request"))
	}
	req.Header = s.headers.Clone()
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook: post to %s: %w", s.host, bareError(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrainBytes))
	resp.Body.Close()
	if err := s.classify(resp); err != nil {
		return err
	}
	if skipped > 0 {
		return &sinks.PartialError{Failed: skipped, Err: sinks.Permanent(encodeErr)}
	}
	return nil
}

// bareError drops the *url.Error wrapper, which quotes the whole URL (its query may hold a
// token).
func bareError(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

// classify turns an answer into nil (accepted), a retryable error or a permanent one.
func (s *Sink) classify(resp *http.Response) error {
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		err := fmt.Errorf("webhook: %s answered status %d", s.host, code)
		if d, ok := retryAfter(resp.Header.Get("Retry-After"), s.now()); ok {
			return sinks.RetryAfter(err, d)
		}
		return err
	case code >= 300 && code < 400:
		return sinks.Permanent(fmt.Errorf("webhook: %s answered status %d (redirects are not followed; configure the final URL)", s.host, code))
	default:
		return sinks.Permanent(fmt.Errorf("webhook: %s refused the batch with status %d", s.host, code))
	}
}

// retryAfter parses a Retry-After value: delay-seconds or an HTTP date (RFC 9110 10.2.3).
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// encode renders batch into s.body as a JSON array, leaving out records that cannot be encoded.
func (s *Sink) encode(batch []record.Record) (skipped int, firstErr error) {
	s.body.Reset()
	s.body.WriteByte('[')
	n := 0
	for _, rec := range batch {
		b, err := sinks.MarshalRecord(rec)
		if err != nil {
			skipped++
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if n > 0 {
			s.body.WriteByte(',')
		}
		s.body.Write(b)
		n++
	}
	s.body.WriteByte(']')
	return skipped, firstErr
}

func (s *Sink) compress(p []byte) ([]byte, error) {
	s.zbuf.Reset()
	if s.zw == nil {
		s.zw = gzip.NewWriter(&s.zbuf)
	} else {
		s.zw.Reset(&s.zbuf)
	}
	if _, err := s.zw.Write(p); err != nil {
		return nil, err
	}
	if err := s.zw.Close(); err != nil {
		return nil, err
	}
	return s.zbuf.Bytes(), nil
}

func (s *Sink) trimBuffers() {
	if s.body.Cap() > keepBufBytes {
		s.body = bytes.Buffer{}
	}
	if s.zbuf.Cap() > keepBufBytes {
		s.zbuf = bytes.Buffer{}
	}
}

// Close releases idle connections; later Writes fail with sinks.ErrClosed. It is idempotent.
func (s *Sink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		s.client.CloseIdleConnections()
	}
	return nil
}
