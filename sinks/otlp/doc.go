// Package otlp is the sink that sends records to an OpenTelemetry collector (or any OTLP logs
// receiver) as OpenTelemetry log records, over OTLP/gRPC or OTLP/HTTP, with the OpenTelemetry
// Go SDK's exporters.
//
// Each record becomes one log record: its time (a request's start, a session part's last
// request), severity INFO (WARN for a malicious request or a part that holds one), the event
// name apisessions.request or apisessions.session, the record's JSON as the body, and the
// fields a query needs as attributes (session.id, the part, http.request.method, http.route,
// http.response.status_code, client.address, user.name, …). The resource carries service.name
// and the configured resource attributes.
//
// A batch is one Export call made while the pipeline waits: the exporter's own retries and
// queue are off, so that the pipeline's retries, spool and counters give this sink the
// delivery guarantees of the others. Header values never appear in errors or logs.
//
// It owns the keys of an otlp sink (Config). It imports the sinks framework, the
// configuration schema and the record shape, nothing else of apisessions.
package otlp
