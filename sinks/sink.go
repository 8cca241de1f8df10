package sinks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sessions/risk"
)

// Sink is one destination of records.
//
// The pipeline calls Write from a single goroutine per sink and never concurrently with Close,
// so implementations need no locking of their own for the pipeline's sake. Write must honour
// ctx (the pipeline bounds every write with a timeout), must not keep batch or mutate its
// records after returning, and reports how the batch fared through its error:
//   - nil: every record was delivered;
//   - a *PartialError: some records were delivered, Failed were not;
//   - any other error: none of the batch can be counted as delivered.
//
// Errors wrapped with Permanent say that writing the same records again cannot succeed (a
// record that cannot be encoded, a request the destination refuses); any other error is worth
// retrying.
type Sink interface {
	Write(ctx context.Context, batch []record.Record) error
	// Close flushes what the sink buffers and releases its resources, honouring ctx's deadline.
	// The pipeline calls it once, after the last Write has returned.
	Close(ctx context.Context) error
}

// Settings is what the command passes to every sink it creates.
type Settings struct {
	// Logger already names the sink; a nil Logger discards.
	Logger *slog.Logger
	// Stdout is where a sink configured with path "-" writes (os.Stdout in production).
	Stdout io.Writer
	// DataDir is server.data_dir: where a sink keeps its files when its configuration names
	// no place of their own.
	DataDir string
	// Retention is sessions.retention: how long a sink that stores records keeps them.
	Retention time.Duration
	// IdleTimeout (sessions.idle_timeout) and DayBoundary (sessions.day_boundary; nil is UTC)
	// are the rules that end session parts, for a sink that derives whether a part ended.
	IdleTimeout time.Duration
	DayBoundary *time.Location
	// Risk is sessions.risk, for a sink that scores session parts itself; nil is the
	// default model.
	Risk *risk.Model
}

// Factory is one sink type: its name in configuration files, the configuration of its own
// keys and how its sinks are created. The command lists the factories it ships; the list also
// tells config which types and keys a file may name (ConfigType).
type Factory struct {
	// Type is the sink type as configuration files name it ("jsonl", …).
	Type string
	// Options returns the type's configuration with its defaults; config decodes a sink's own
	// keys into it and has it validate them.
	Options func() config.SinkOptions
	// Create builds one sink. It fails fast on a configuration it cannot serve (a file it cannot
	// open), so that problems surface at start rather than on the first record.
	Create func(cfg config.Sink, s Settings) (Sink, error)
}

// ConfigType describes f's type to config.Parse.
func (f Factory) ConfigType() config.SinkType {
	return config.SinkType{Name: f.Type, Options: f.Options}
}

// FactoryOf returns the Factory of type typ whose options are of type O (defaults returns them
// with their defaults) and whose sinks newSink builds from a sink's configuration and its
// options: those decoded from the file, or the defaults when cfg.Options is nil (a sink built
// in code). Options of another type are refused. A failed newSink yields a nil Sink, never an
// interface holding a nil pointer.
func FactoryOf[O config.SinkOptions, S Sink](typ string, defaults func() O, newSink func(cfg config.Sink, opts O, s Settings) (S, error)) Factory {
	return Factory{
		Type:    typ,
		Options: func() config.SinkOptions { return defaults() },
		Create: func(cfg config.Sink, s Settings) (Sink, error) {
			opts, ok := cfg.Options.(O)
			switch {
			case cfg.Options == nil:
				opts = defaults()
			case !ok:
				return nil, fmt.Errorf("%s sink: the configuration holds %T, not the options of this type; decode it with the program's sink types", typ, cfg.Options)
			}
			sk, err := newSink(cfg, opts, s)
			if err != nil {
				return nil, err
			}
			return sk, nil
		},
	}
}

// ErrClosed is returned by a sink's Write after its Close.
var ErrClosed = Permanent(errors.New("sink closed"))

// permanentError marks an error that retrying the same records cannot fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent wraps err to say that writing the same records again cannot succeed, so a retry
// policy gives up at once. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// PartialError is returned by a Write in which only some records of the batch failed: the other
// len(batch)-Failed records were delivered.
type PartialError struct {
	// Failed counts the records of the batch that were not delivered.
	Failed int
	// Err says why; it may be marked Permanent.
	Err error
}

// Error describes the failure without any record content.
func (e *PartialError) Error() string {
	return fmt.Sprintf("%d records not written: %v", e.Failed, e.Err)
}

// Unwrap returns the cause.
func (e *PartialError) Unwrap() error { return e.Err }
