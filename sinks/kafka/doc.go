// Package kafka is the sink that produces records to a Kafka topic with franz-go: the key is
// the session id, so that every record of a session lands in one partition and keeps its order
// there; the value is the record's JSON; a "kind" header says request or session.
//
// The producer waits for all in-sync replicas (acks=all) and is idempotent (franz-go's
// default), so a retry inside the client never duplicates or reorders a record within a
// partition. A batch is produced synchronously; records the cluster did not take are reported
// to the pipeline, which retries them and spools them while the cluster is unreachable.
//
// It owns the keys of a Kafka sink (Config: brokers, topic, tls, sasl, their checks). It
// imports the sinks framework, the configuration schema and the record shape, nothing else of
// apisessions.
package kafka
