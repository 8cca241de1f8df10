package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/apisessions/apisessions/extproc"
	"github.com/apisessions/apisessions/sessions/extract"
	"github.com/apisessions/apisessions/sinks"
	"github.com/apisessions/apisessions/state"
)

// Label values of apisessions_extproc_messages_total.
const (
	modeInline        = "inline"
	modeObservability = "observability"
)

// Reasons of apisessions_extproc_streams_refused_total and
// apisessions_extproc_bodies_over_budget_total.
const (
	reasonMaxStreams = "max_streams"
	reasonBodyBudget = "body_budget"
	reasonMemory     = "memory"
)

// Outcomes of apisessions_sink_records_total.
const (
	outcomeAccepted  = "accepted"
	outcomeDelivered = "delivered"
	outcomeDropped   = "dropped"
	outcomeFailed    = "failed"
	outcomeSpooled   = "spooled"
	outcomeReplayed  = "replayed"
	outcomeRejected  = "rejected"
	// outcomeSpoolDropped is the part of dropped the spool lost.
	outcomeSpoolDropped = "spool_dropped"
	// outcomeEvidenceDropped is the part of dropped that was evidence.
	outcomeEvidenceDropped = "evidence_dropped"
)

// collector turns the components' Stats() into const metrics at each scrape.
type collector struct {
	src Sources

	streamsOpen, streams, messages, observed, outOfScope, panics, protocolErrors,
	streamErrors, headersDropped, invalidSessionValues, modeOverrides, authRejected,
	streamsRefused, idleTimeouts, bodyBytesHeld, bodiesOverBudget, memoryLevel *prometheus.Desc

	requests, malicious, engineOutOfScope, liveParts, routeHosts, routesCollapsed,
	sharedQueued, sharedQueueFull, partWorkerPanics,
	lookupHits, lookupMisses, parseErrors *prometheus.Desc
	links, linksMade, linksEvicted, linksRefused, linksFailOpen *prometheus.Desc

	sinkQueued, sinkRecords, sinkDropped, sinkRetries, sinkSpoolRecords, sinkSpoolBytes *prometheus.Desc

	stateUp, stateErrors, stateSkipped, stateLate, stateJoins *prometheus.Desc

	immediate, protectVerdicts, protectBuckets, protectBucketsEvicted, protectBlocks, protectLocal *prometheus.Desc
	protectWindows, protectWindowsEvicted                                                          *prometheus.Desc
}

func desc(subsystem, name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, name), help, labels, nil)
}

func newCollector(src Sources) *collector {
	return &collector{
		src: src,

		streamsOpen:          desc("extproc", "streams_open", "ext_proc streams being served now."),
		streams:              desc("extproc", "streams_total", "ext_proc streams accepted since start (one per HTTP request Envoy sends)."),
		messages:             desc("extproc", "messages_total", "ext_proc messages received, by phase and by the message's mode (inline or observability).", "phase", "mode"),
		observed:             desc("extproc", "exchanges_observed_total", "Finished exchanges handed to the sessions engine."),
		outOfScope:           desc("extproc", "streams_out_of_scope_total", "Streams whose host is not tracked (traffic.hosts); answered, not recorded."),
		panics:               desc("extproc", "panics_total", "Streams ended by a recovered panic (the request continues in Envoy)."),
		protocolErrors:       desc("extproc", "protocol_errors_total", "Messages that break the ext_proc protocol: no request case, duplicate or out-of-order phases, headers with both value and raw_value."),
		streamErrors:         desc("extproc", "stream_errors_total", "Streams ended by a transport error other than a normal end or reset."),
		headersDropped:       desc("extproc", "headers_dropped_total", "Header fields not copied because a header list was over the per-list cap."),
		invalidSessionValues: desc("extproc", "invalid_session_values_total", "Inline answers whose session id could not be sent as a header value."),
		modeOverrides:        desc("extproc", "mode_overrides_total", "Inline request or response headers answers that asked Envoy for a body (mode_override)."),
		authRejected:         desc("extproc", "auth_rejected_total", "gRPC calls refused because they lacked the token of server.grpc_token_file or carried a wrong one."),
		streamsRefused:       desc("extproc", "streams_refused_total", "Streams refused at once with RESOURCE_EXHAUSTED (Envoy then applies failure_mode_allow), by reason: max_streams (server.max_streams streams were open), memory (the process's resident memory, with 64 KiB for each open stream, was at 90 % of its memory limit).", "reason"),
		idleTimeouts:         desc("extproc", "stream_idle_timeouts_total", "Streams ended because no message came within server.stream_idle_timeout; each is recorded as a cut exchange."),
		bodyBytesHeld:        desc("extproc", "body_buffer_bytes", "Body bytes open streams keep now (at most traffic.body_budget_bytes)."),
		bodiesOverBudget:     desc("extproc", "bodies_over_budget_total", "Bodies not kept, by reason: body_budget (traffic.body_budget_bytes was in use), memory (the process's resident memory was at 80 % of its memory limit); their requests are recorded without them.", "reason"),
		memoryLevel:          desc("extproc", "memory_level", "What the memory guard asks of streams now: 0 nothing (or no memory limit), 1 bodies are not kept, 2 new streams are refused, 3 both."),

		requests:         desc("sessions", "requests_total", "Request records emitted by the engine."),
		malicious:        desc("sessions", "malicious_requests_total", "Requests an attack verdict marked malicious."),
		engineOutOfScope: desc("sessions", "out_of_scope_total", "Exchanges the engine dropped because their host is out of scope."),
		liveParts:        desc("sessions", "active_parts", "Session parts held in memory now (bounded by sessions.max_live_parts)."),
		routeHosts:       desc("sessions", "route_hosts", "Hosts with a route table of their own."),
		routesCollapsed:  desc("sessions", "routes_collapsed_total", "Requests whose route was collapsed because the host's route table was full."),
		links:            desc("sessions", "links", "Entries of the stitching link table (sessions.stitch.max_links)."),
		linksMade:        desc("sessions", "links_total", "Values linked to another session by a response, by kind (rotation, login).", "kind"),
		linksEvicted:     desc("sessions", "links_evicted_total", "Links evicted from the full link table before they expired."),
		linksRefused:     desc("sessions", "links_refused_total", "Issued values not linked: already a session of their own, or issued to another session."),
		linksFailOpen:    desc("sessions", "links_fail_open_total", "Requests stitched on the replica's own links because the shared links did not answer (state.redis only)."),
		sharedQueued:     desc("sessions", "shared_queued", "Requests waiting for a part worker to ask the shared state for their part (state.redis only)."),
		sharedQueueFull:  desc("sessions", "shared_queue_full_total", "Requests whose part was decided locally because their part worker's queue was full (state.redis only)."),
		partWorkerPanics: desc("sessions", "part_worker_panics_total", "Batches of requests a bug in a part worker cut short; their records are lost and logged."),
		lookupHits:       desc("", "lookup_cache_hits_total", "Lookups of decoded JWT claims answered by the lookup cache (sessions.lookup_cache_mb)."),
		lookupMisses:     desc("", "lookup_cache_misses_total", "Lookups of decoded JWT claims that missed the lookup cache and decoded the token."),
		parseErrors:      desc("", "parse_errors_total", "Values of recorded exchanges that could not be parsed and counted as absent parameters, by source: json_body, form_body (multipart), jwt, base64, json (decode: json).", "source"),

		sinkQueued:       desc("sink", "records_queued", "Records waiting in the sink's queue now (queue depth).", "sink"),
		sinkRecords:      desc("sink", "records_total", "Records by sink and outcome: accepted into the queue; delivered (replayed ones included); spooled to disk; replayed from the spool; dropped (for any reason, see sink_records_dropped_total); spool_dropped (the part of dropped the spool lost); evidence_dropped (the part of dropped that was evidence: malicious requests, final session records); failed (refused, retried out, or not encodable); rejected (the part of failed kept in the rejects file).", "sink", "outcome"),
		sinkDropped:      desc("sink", "records_dropped_total", "Records dropped by sink and reason: queue_full, flood_key (a session key flooding a sink that is behind), evicted_for_evidence (a plain record making room for evidence), spool_full, spool_damaged, spool_error, shutdown.", "sink", "reason"),
		sinkRetries:      desc("sink", "write_retries_total", "Writes that failed and were tried again.", "sink"),
		sinkSpoolRecords: desc("sink", "spool_records", "Records waiting in the sink's on-disk spool now.", "sink"),
		sinkSpoolBytes:   desc("sink", "spool_bytes", "Size of the sink's on-disk spool now.", "sink"),

		stateUp:      desc("state", "up", "1 while the shared state (state.redis) is in the path; 0 while failures keep it out and requests are decided locally."),
		stateErrors:  desc("state", "errors_total", "Round trips to the shared state that failed or passed state.redis.timeout, by op; each such request was decided locally.", "op"),
		stateSkipped: desc("state", "skipped_total", "Requests decided locally without trying the shared state because it was down, by op.", "op"),
		stateLate:    desc("state", "late_total", "Shared state answers dropped because they came after their request stopped waiting, by op.", "op"),
		stateJoins:   desc("state", "part_joins_total", "Requests sent on the join path (no script) because the replica's own part said they join it, by outcome: joined, or refused (the shared state named another part; the script decided).", "outcome"),

		immediate:             desc("extproc", "immediate_responses_total", "Requests answered by apisessions instead of the upstream (blocks and rate limits, inline mode)."),
		protectVerdicts:       desc("protection", "verdicts_total", "Requests a protection rule acted on (dry_run=\"false\") or would have acted on (dry_run=\"true\": the rule's dry_run, or observability mode), by rule and action; manual blocks under rule=\"manual\".", "rule", "action", "dry_run"),
		protectBuckets:        desc("protection", "buckets", "Rate-limit buckets held in memory now (at most protection.max_buckets)."),
		protectBucketsEvicted: desc("protection", "buckets_evicted_total", "Rate-limit buckets dropped to make room for new ones (protection.max_buckets)."),
		protectBlocks:         desc("protection", "blocks", "Manual blocks of sessions and users held now (at most protection.max_blocks)."),
		protectLocal:          desc("protection", "local_decisions_total", "Requests whose rate-limit buckets this replica decided alone because the shared state (state.redis) did not answer."),
		protectWindows:        desc("protection", "windows", "Sliding windows of sequence, requires, enumeration and count conditions and of login outcomes held in memory now (at most protection.max_windows)."),
		protectWindowsEvicted: desc("protection", "windows_evicted_total", "Sliding windows dropped to make room for new ones (protection.max_windows)."),
	}
}

var _ prometheus.Collector = (*collector)(nil)

// Describe sends only the descriptors of the sources that are set, so a registry without a
// component does not advertise its metrics.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	if c.src.Extproc != nil {
		for _, d := range []*prometheus.Desc{c.streamsOpen, c.streams, c.messages, c.observed, c.outOfScope, c.panics,
			c.protocolErrors, c.streamErrors, c.headersDropped, c.invalidSessionValues, c.modeOverrides, c.authRejected,
			c.streamsRefused, c.idleTimeouts, c.bodyBytesHeld, c.bodiesOverBudget, c.memoryLevel, c.immediate} {
			ch <- d
		}
	}
	if c.src.Engine != nil {
		for _, d := range []*prometheus.Desc{c.requests, c.malicious, c.engineOutOfScope, c.liveParts, c.routeHosts, c.routesCollapsed,
			c.sharedQueued, c.sharedQueueFull, c.partWorkerPanics, c.lookupHits, c.lookupMisses, c.parseErrors,
			c.links, c.linksMade, c.linksEvicted, c.linksRefused, c.linksFailOpen} {
			ch <- d
		}
	}
	if c.src.Sinks != nil {
		ch <- c.sinkQueued
		ch <- c.sinkRecords
		ch <- c.sinkDropped
		ch <- c.sinkRetries
		ch <- c.sinkSpoolRecords
		ch <- c.sinkSpoolBytes
	}
	if c.src.Protect != nil {
		ch <- c.protectVerdicts
		ch <- c.protectBuckets
		ch <- c.protectBucketsEvicted
		ch <- c.protectBlocks
		ch <- c.protectLocal
		ch <- c.protectWindows
		ch <- c.protectWindowsEvicted
	}
	if c.src.State != nil {
		ch <- c.stateUp
		ch <- c.stateErrors
		ch <- c.stateSkipped
		ch <- c.stateLate
		ch <- c.stateJoins
	}
}

// Collect reads each source once per scrape.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	if c.src.Extproc != nil {
		c.collectExtproc(ch, c.src.Extproc.Stats())
	}
	if c.src.Engine != nil {
		s := c.src.Engine.Stats()
		ch <- counter(c.requests, s.Observed)
		ch <- counter(c.malicious, s.Malicious)
		ch <- counter(c.engineOutOfScope, s.OutOfScope)
		ch <- prometheus.MustNewConstMetric(c.liveParts, prometheus.GaugeValue, float64(s.LiveParts))
		ch <- prometheus.MustNewConstMetric(c.routeHosts, prometheus.GaugeValue, float64(s.RouteHosts))
		ch <- counter(c.routesCollapsed, s.RoutesCollapsed)
		ch <- prometheus.MustNewConstMetric(c.sharedQueued, prometheus.GaugeValue, float64(s.SharedQueued))
		ch <- counter(c.sharedQueueFull, s.SharedQueueFull)
		ch <- counter(c.partWorkerPanics, s.PartWorkerPanics)
		ch <- counter(c.lookupHits, s.LookupCacheHits)
		ch <- prometheus.MustNewConstMetric(c.links, prometheus.GaugeValue, float64(s.Links))
		ch <- prometheus.MustNewConstMetric(c.linksMade, prometheus.CounterValue, float64(s.LinksRotation), "rotation")
		ch <- prometheus.MustNewConstMetric(c.linksMade, prometheus.CounterValue, float64(s.LinksLogin), "login")
		ch <- counter(c.linksEvicted, s.LinksEvicted)
		ch <- counter(c.linksRefused, s.LinksRefused)
		ch <- counter(c.linksFailOpen, s.LinksFailOpen)
		ch <- counter(c.lookupMisses, s.LookupCacheMisses)
		for i, n := range s.ParseErrors {
			ch <- prometheus.MustNewConstMetric(c.parseErrors, prometheus.CounterValue, float64(n), extract.ParseSourceNames[i])
		}
	}
	if c.src.State != nil {
		c.collectState(ch, c.src.State.Stats())
	}
	if c.src.Protect != nil {
		s := c.src.Protect.Stats()
		for _, r := range s.Rules {
			ch <- prometheus.MustNewConstMetric(c.protectVerdicts, prometheus.CounterValue, float64(r.Fired), r.Rule, r.Action, "false")
			ch <- prometheus.MustNewConstMetric(c.protectVerdicts, prometheus.CounterValue, float64(r.DryRun), r.Rule, r.Action, "true")
		}
		ch <- prometheus.MustNewConstMetric(c.protectBuckets, prometheus.GaugeValue, float64(s.Buckets))
		ch <- counter(c.protectBucketsEvicted, s.BucketsEvicted)
		ch <- prometheus.MustNewConstMetric(c.protectBlocks, prometheus.GaugeValue, float64(s.Blocks))
		ch <- counter(c.protectLocal, s.Local)
		ch <- prometheus.MustNewConstMetric(c.protectWindows, prometheus.GaugeValue, float64(s.Windows))
		ch <- counter(c.protectWindowsEvicted, s.WindowsEvicted)
	}
	if c.src.Sinks != nil {
		for _, o := range c.src.Sinks.Stats() {
			ch <- prometheus.MustNewConstMetric(c.sinkQueued, prometheus.GaugeValue, float64(o.Queued), o.Name)
			for _, v := range []struct {
				outcome string
				n       uint64
			}{
				{outcomeAccepted, o.Accepted},
				{outcomeDelivered, o.Delivered},
				{outcomeDropped, o.Dropped},
				{outcomeFailed, o.Failed},
				{outcomeSpooled, o.Spooled},
				{outcomeReplayed, o.Replayed},
				{outcomeRejected, o.Rejected},
				{outcomeSpoolDropped, o.SpoolDropped},
				{outcomeEvidenceDropped, o.EvidenceDropped},
			} {
				ch <- prometheus.MustNewConstMetric(c.sinkRecords, prometheus.CounterValue, float64(v.n), o.Name, v.outcome)
			}
			for r, n := range o.Drops {
				ch <- prometheus.MustNewConstMetric(c.sinkDropped, prometheus.CounterValue, float64(n), o.Name, sinks.DropReason(r).String())
			}
			ch <- prometheus.MustNewConstMetric(c.sinkRetries, prometheus.CounterValue, float64(o.Retried), o.Name)
			ch <- prometheus.MustNewConstMetric(c.sinkSpoolRecords, prometheus.GaugeValue, float64(o.SpoolRecords), o.Name)
			ch <- prometheus.MustNewConstMetric(c.sinkSpoolBytes, prometheus.GaugeValue, float64(o.SpoolBytes), o.Name)
		}
	}
}

func (c *collector) collectState(ch chan<- prometheus.Metric, s state.Stats) {
	up := 0.0
	if s.Up {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(c.stateUp, prometheus.GaugeValue, up)
	for op := range state.NumOps {
		ch <- prometheus.MustNewConstMetric(c.stateErrors, prometheus.CounterValue, float64(s.Errors[op]), op.String())
		ch <- prometheus.MustNewConstMetric(c.stateSkipped, prometheus.CounterValue, float64(s.Skipped[op]), op.String())
		ch <- prometheus.MustNewConstMetric(c.stateLate, prometheus.CounterValue, float64(s.Late[op]), op.String())
	}
	ch <- prometheus.MustNewConstMetric(c.stateJoins, prometheus.CounterValue, float64(s.Joins), "joined")
	ch <- prometheus.MustNewConstMetric(c.stateJoins, prometheus.CounterValue, float64(s.JoinsRefused), "refused")
}

func (c *collector) collectExtproc(ch chan<- prometheus.Metric, s extproc.Stats) {
	ch <- prometheus.MustNewConstMetric(c.streamsOpen, prometheus.GaugeValue, float64(s.StreamsOpen))
	ch <- counter(c.streams, s.Streams)
	for _, m := range []struct {
		mode   string
		counts extproc.PhaseCounts
	}{{modeInline, s.Inline}, {modeObservability, s.Observability}} {
		for p, n := range m.counts {
			ch <- prometheus.MustNewConstMetric(c.messages, prometheus.CounterValue, float64(n), extproc.Phase(p).String(), m.mode)
		}
	}
	ch <- counter(c.observed, s.Observed)
	ch <- counter(c.outOfScope, s.OutOfScope)
	ch <- counter(c.panics, s.Panics)
	ch <- counter(c.protocolErrors, s.ProtocolErrors)
	ch <- counter(c.streamErrors, s.StreamErrors)
	ch <- counter(c.headersDropped, s.HeadersDropped)
	ch <- counter(c.invalidSessionValues, s.InvalidSessionValues)
	ch <- counter(c.modeOverrides, s.ModeOverrides)
	ch <- counter(c.authRejected, s.AuthRejected)
	ch <- prometheus.MustNewConstMetric(c.streamsRefused, prometheus.CounterValue, float64(s.StreamsRefused), reasonMaxStreams)
	ch <- prometheus.MustNewConstMetric(c.streamsRefused, prometheus.CounterValue, float64(s.StreamsRefusedMemory), reasonMemory)
	ch <- counter(c.idleTimeouts, s.StreamIdleTimeouts)
	ch <- counter(c.immediate, s.ImmediateResponses)
	ch <- prometheus.MustNewConstMetric(c.bodyBytesHeld, prometheus.GaugeValue, float64(s.BodyBytesHeld))
	ch <- prometheus.MustNewConstMetric(c.bodiesOverBudget, prometheus.CounterValue, float64(s.BodiesOverBudget), reasonBodyBudget)
	ch <- prometheus.MustNewConstMetric(c.bodiesOverBudget, prometheus.CounterValue, float64(s.BodiesOverMemory), reasonMemory)
	ch <- prometheus.MustNewConstMetric(c.memoryLevel, prometheus.GaugeValue, float64(s.MemoryLevel))
}

func counter[N int64 | uint64](d *prometheus.Desc, n N) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(n))
}
