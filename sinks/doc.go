// Package sinks delivers records to their destinations. The sessions engine hands every record
// to a Pipeline, which fans it out to one bounded queue per configured sink without ever
// blocking the caller; one worker per sink batches what its queue holds and writes it, so a
// slow or failing destination delays and loses only its own records.
//
// Destinations implement Sink. Each type lives in a subpackage (sinks/jsonl, …) that owns its
// configuration (a struct of the keys only that type has, with their defaults and Validate)
// and exports a Factory; the command lists the factories it ships, which is also how config
// learns which types and keys a file may name. The keys every sink has (queue, batch,
// timeout, retry, spool) are config.Sink's, and NewOutput turns them into an Output.
//
// Each sink's delivery is a chain over one queue: in memory (memQueue), or a spoolQueue whose
// head is the on-disk spool from the first batch the sink could not take until it catches up.
// Under overload the queue gives up plain records before evidence (records of malicious
// requests, final session records), and a session key that floods a sink that is behind loses
// its own records first; every drop is counted with its reason (DropReason).
// The worker reads a batch, writes it with a timeout, reports through the batch's done callback
// how many records are finished, and waits before the next read when a write failed (the
// unfinished rest is that next batch). Shutdown stops retrying, drains, and closes.
//
// sinks imports the record shape (sessions/record) and the configuration schema, never the
// sessions engine, gRPC or the HTTP layer.
package sinks
