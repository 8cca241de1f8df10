package sinks

import (
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sinks/spool"
)

// SpoolDir returns where a sink's spool lives: its spool.dir, else <dataDir>/spool/<name>.
func SpoolDir(cfg config.Sink, dataDir string) string {
	if cfg.Spool.Dir != "" {
		return cfg.Spool.Dir
	}
	return filepath.Join(dataDir, "spool", cfg.Name)
}

// NewOutput builds the pipeline output of a configured sink around sk: its queue, batching,
// timeout and retry settings and, unless spool.max_mb is 0, its spool and rejects file in
// SpoolDir (the rejects file may take an eighth of the spool's size on top of it). It logs
// what the spool recovered from an earlier run. On error nothing stays open but sk, which the
// caller still owns.
func NewOutput(cfg config.Sink, dataDir string, sk Sink, logger *slog.Logger) (Output, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	o := Output{
		Name:          cfg.Name,
		Sink:          sk,
		QueueSize:     cfg.QueueSize,
		BatchSize:     cfg.BatchSize,
		FlushInterval: cfg.FlushInterval.Std(),
		WriteTimeout:  cfg.Timeout.Std(),
		Retry: RetryPolicy{
			InitialInterval: cfg.Retry.InitialInterval.Std(),
			MaxInterval:     cfg.Retry.MaxInterval.Std(),
			MaxElapsed:      cfg.Retry.MaxElapsed.Std(),
		},
	}
	if cfg.Spool.MaxMB <= 0 {
		return o, nil
	}
	dir := SpoolDir(cfg, dataDir)
	maxBytes := int64(cfg.Spool.MaxMB) << 20
	sp, rec, err := spool.Open(dir, spool.Options{MaxBytes: maxBytes})
	if err != nil {
		return Output{}, fmt.Errorf("sink %q: %w", cfg.Name, err)
	}
	rj, err := spool.OpenRejects(filepath.Join(dir, "rejected"), max(maxBytes/8, 1<<20))
	if err != nil {
		sp.Close()
		return Output{}, fmt.Errorf("sink %q: %w", cfg.Name, err)
	}
	if rec.CorruptEntries > 0 {
		logger.Warn("spool damaged by a crash, cut back to its last whole record",
			"spool_dir", dir, "damaged_bytes", rec.CorruptBytes)
	}
	if rec.Entries > 0 {
		logger.Info("spool holds records from an earlier run", "spool_dir", dir, "records", rec.Entries, "spool_bytes", rec.Bytes)
	}
	o.Spool, o.Rejects = sp, rj
	return o, nil
}
