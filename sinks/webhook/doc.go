// Package webhook is the sink that POSTs batches of records to an HTTP endpoint as one JSON
// array per request, gzip-compressed unless configured otherwise, with the configured headers.
//
// A 2xx answer accepts the batch. 408, 429 and 5xx answers and network errors are worth
// retrying, and a Retry-After header (seconds or an HTTP date) sets the delay before the next
// try. Any other answer (4xx, and 3xx: redirects are not followed, so that headers carrying
// credentials never go elsewhere) refuses the batch for good: the pipeline keeps it in the
// spool's rejects file for inspection.
//
// Neither header values nor the URL's query appear in errors or logs.
//
// It owns the keys of a webhook sink (Config: url, headers, gzip, tls, their defaults and
// checks). It imports the sinks framework, the configuration schema and the record shape,
// nothing else of apisessions.
package webhook
