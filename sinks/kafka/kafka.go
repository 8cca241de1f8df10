package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/internal/tlsclient"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sinks"
)

// Factory creates Kafka sinks from their Config.
var Factory = sinks.FactoryOf(Type, DefaultConfig, func(cfg config.Sink, c *Config, s sinks.Settings) (*Sink, error) {
	return New(cfg, *c, s)
})

// Sink produces records to one topic. It is safe for concurrent use.
type Sink struct {
	logger *slog.Logger
	client *kgo.Client
	topic  string

	mu     sync.Mutex
	closed bool
	// recs is reused between batches: franz-go is done with a record once ProduceSync returns.
	recs []*kgo.Record
}

// New builds the producer c describes (brokers, topic, TLS, SASL), bounding its waits by the
// sink's write timeout (cfg.Timeout), with extra client options (tests use them). It does
// not connect: the first batch does, and a cluster that is down then only delays records,
// which wait in the spool.
func New(cfg config.Sink, c Config, s sinks.Settings, extra ...kgo.Opt) (*Sink, error) {
	if len(c.Brokers) == 0 || c.Topic == "" {
		return nil, errors.New("kafka: brokers and topic are required")
	}
	logger := s.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	timeout := max(cfg.Timeout.Std(), time.Second)
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.DefaultProduceTopic(c.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// Bound the client's own retries so a record fails back to the pipeline, which spools.
		kgo.RecordDeliveryTimeout(timeout),
		kgo.ProduceRequestTimeout(timeout),
		kgo.ClientID("apisessions"),
		kgo.WithLogger(kgoLogger{logger}),
	}
	if c.TLS.IsSet() {
		tc, err := tlsclient.Config(c.TLS)
		if err != nil {
			return nil, fmt.Errorf("kafka: %w", err)
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if c.SASL.Mechanism != "" {
		mech, err := mechanism(c.SASL)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(mech))
	}
	client, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	return &Sink{logger: logger, client: client, topic: c.Topic}, nil
}

func mechanism(a SASL) (sasl.Mechanism, error) {
	switch a.Mechanism {
	case SASLPlain:
		return plain.Auth{User: a.Username, Pass: a.Password}.AsMechanism(), nil
	case SASLScramSHA256:
		return scram.Auth{User: a.Username, Pass: a.Password}.AsSha256Mechanism(), nil
	case SASLScramSHA512:
		return scram.Auth{User: a.Username, Pass: a.Password}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("kafka: SASL mechanism %q is not supported", a.Mechanism)
}

var (
	kindRequest = []byte(record.KindRequest)
	kindSession = []byte(record.KindSession)
)

// Write produces batch and waits for the cluster's acknowledgement. Records that cannot be
// encoded or that the cluster refuses for good (too large, invalid) are reported as permanent;
// when some records could not be produced for a reason worth retrying, the records from the
// first of them on are reported, so that a retry keeps each session's order.
func (s *Sink) Write(ctx context.Context, batch []record.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return sinks.ErrClosed
	}
	recs := s.recs[:0]
	// idx maps each produced record to its position in batch.
	idx := make([]int, 0, len(batch))
	skipped := 0
	var encodeErr error
	for i, rec := range batch {
		v, err := sinks.MarshalRecord(rec)
		if err != nil {
			skipped++
			if encodeErr == nil {
				encodeErr = err
			}
			continue
		}
		kind := kindRequest
		if rec.RecordKind() == record.KindSession {
			kind = kindSession
		}
		recs = append(recs, &kgo.Record{
			Key:     []byte(rec.SessionID()),
			Value:   v,
			Headers: []kgo.RecordHeader{{Key: "kind", Value: kind}},
		})
		idx = append(idx, i)
	}
	defer func() {
		clear(recs)
		s.recs = recs[:0]
	}()
	if len(recs) == 0 {
		return &sinks.PartialError{Failed: skipped, Err: sinks.Permanent(encodeErr)}
	}
	results := s.client.ProduceSync(ctx, recs...)
	firstRetry := -1
	var retryErr, permErr error
	permanent := skipped
	for i, r := range results {
		if r.Err == nil {
			continue
		}
		if isPermanent(r.Err) {
			permanent++
			if permErr == nil {
				permErr = fmt.Errorf("kafka: produce to %s: %w", s.topic, r.Err)
			}
			continue
		}
		if firstRetry < 0 {
			firstRetry = idx[i]
			retryErr = fmt.Errorf("kafka: produce to %s: %w", s.topic, r.Err)
		}
	}
	switch {
	case firstRetry == 0:
		return retryErr
	case firstRetry > 0:
		// Records refused for good before firstRetry count as delivered here: the pipeline's
		// partial error carries one count, and such refusals are rare and logged below.
		if permErr != nil {
			s.logger.Warn("records refused by the cluster", "error", permErr.Error())
		}
		return &sinks.PartialError{Failed: len(batch) - firstRetry, Err: retryErr}
	case permanent > 0:
		if permErr == nil {
			permErr = encodeErr
		}
		return &sinks.PartialError{Failed: permanent, Err: sinks.Permanent(permErr)}
	}
	return nil
}

// isPermanent reports errors that producing the same record again cannot fix.
func isPermanent(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) ||
		errors.Is(err, kerr.InvalidRecord) || errors.Is(err, kerr.CorruptMessage)
}

// Close flushes nothing (every Write waits for its records) and closes the client. Later
// Writes fail with sinks.ErrClosed; Close is idempotent.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	done := make(chan struct{})
	go func() {
		s.client.Close()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kafka: close: %w", ctx.Err())
	}
}

// kgoLogger passes franz-go's warnings and errors to the sink's logger; its info and debug
// lines are per connection and too chatty.
type kgoLogger struct{ l *slog.Logger }

func (k kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lv := slog.LevelWarn
	if level == kgo.LogLevelError {
		lv = slog.LevelError
	}
	k.l.Log(context.Background(), lv, "kafka client: "+msg, keyvals...)
}
