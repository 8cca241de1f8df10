// Package spool is a bounded, crash-safe FIFO of opaque entries on disk: the place where a sink
// keeps the records it could not take yet, so that they are replayed, in order, when it
// recovers, and survive a restart or a crash in the meantime.
//
// # Layout
//
// A spool is a directory of segment files named by a 20-digit sequence number
// (00000000000000000001.seg, …) and a small cursor file. Segments are append-only; each entry is
// an 8-byte header — the payload length and the CRC-32C of the payload, both little-endian
// uint32 — followed by the payload. Entries are read from the oldest segment; the cursor file
// records how far the reader has committed, and a segment is deleted once it is read to its end.
//
// # Durability
//
// Append writes all its entries with one write and fsyncs the segment before it returns, so
// appended entries survive a process crash and a power loss. The cursor is rewritten in place on
// every Commit without an fsync: after a power loss the reader may resume from an older cursor
// and replay entries a second time (at-least-once), never skip one.
//
// # Bounds and damage
//
// The spool never holds more than MaxBytes of segments: when an Append would pass it, the
// oldest segments are deleted and the entries in them that were not yet read are counted as
// dropped (those a Read had handed out are reported by Rewind, unless they are committed). A
// ranked spool (SetRank) deletes the entries of its lowest ranks first instead, rewriting the
// oldest segments without them, never those of the ranks it keeps, and refuses the newest entries
// once the kept ones fill it; entries handed out or held (Hold) are never deleted then. On
// Open, every segment is scanned; an entry with a bad length or checksum (a write torn by a
// crash) ends its segment: the file is truncated there and the cut entries and bytes are
// reported, never replayed.
//
// Package sinks uses a spool as the on-disk head of a sink's queue.
// It imports nothing from apisessions.
package spool
