package kafka_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/apisessions/apisessions/config"
	"github.com/apisessions/apisessions/sessions/record"
	"github.com/apisessions/apisessions/sinks"
	"github.com/apisessions/apisessions/sinks/kafka"
)

const topic = "api-sessions"

func cluster(t *testing.T) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(2), kfake.SeedTopics(4, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func sinkConfig(c *kfake.Cluster) config.Sink {
	sc := config.DefaultSink(kafka.Type)
	sc.Name = "kafka"
	sc.Options = &kafka.Config{Brokers: c.ListenAddrs(), Topic: topic}
	sc.Timeout = config.Duration(2 * time.Second)
	return sc
}

func newSink(t *testing.T, sc config.Sink) *kafka.Sink {
	t.Helper()
	// Short client-side waits keep the outage test quick; production keeps franz-go's defaults.
	sk, err := kafka.New(sc, *sc.Options.(*kafka.Config), sinks.Settings{},
		kgo.MetadataMinAge(10*time.Millisecond),
		kgo.RetryBackoffFn(func(int) time.Duration { return 10 * time.Millisecond }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sk.Close(context.Background()) })
	return sk
}

func reqs(n, sessions int) []record.Record {
	out := make([]record.Record, n)
	for i := range out {
		out[i] = &record.Request{Session: "s_" + strconv.Itoa(i%sessions), RequestID: strconv.Itoa(i)}
	}
	return out
}

// consumed reads the topic until it has n distinct records, and returns the first arrival of
// each: a produce the client gave up on may still have been written, so a retry can add a copy.
func consumed(t *testing.T, c *kfake.Cluster, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []*kgo.Record
	seen := map[string]bool{}
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			var ids []string
			for _, r := range out {
				var v map[string]any
				json.Unmarshal(r.Value, &v)
				ids = append(ids, v["request_id"].(string))
			}
			slices.SortFunc(ids, func(a, b string) int { x, _ := strconv.Atoi(a); y, _ := strconv.Atoi(b); return x - y })
			t.Fatalf("consumed %d of %d records before the deadline: %v", len(out), n, ids)
		}
		for _, r := range fs.Records() {
			if !seen[string(r.Value)] {
				seen[string(r.Value)] = true
				out = append(out, r)
			}
		}
	}
	return out
}

// check verifies that every session's records sit in one partition, in emit order, with the
// session as key and the record JSON as value.
func check(t *testing.T, got []*kgo.Record, n, sessions int) {
	t.Helper()
	part := map[string]int32{}
	order := map[string][]int{}
	for _, r := range got {
		var v map[string]any
		if err := json.Unmarshal(r.Value, &v); err != nil {
			t.Fatalf("value %q is not JSON: %v", r.Value, err)
		}
		s := string(r.Key)
		if v["session"] != s || v["kind"] != "request" || len(r.Headers) != 1 || string(r.Headers[0].Value) != "request" {
			t.Errorf("record key %q, value %s, headers %v: want the session as key, kind request", s, r.Value, r.Headers)
		}
		if p, ok := part[s]; ok && p != r.Partition {
			t.Errorf("session %s is in partitions %d and %d, want one", s, p, r.Partition)
		}
		part[s] = r.Partition
		id, _ := strconv.Atoi(v["request_id"].(string))
		order[s] = append(order[s], id)
	}
	for s, ids := range order {
		if !slices.IsSorted(ids) {
			t.Errorf("session %s records out of order: %v", s, ids)
		}
	}
	if len(got) != n || len(order) != sessions {
		t.Errorf("consumed %d records of %d sessions, want %d of %d", len(got), len(order), n, sessions)
	}
}

func TestProduces(t *testing.T) {
	t.Parallel()
	c := cluster(t)
	sk := newSink(t, sinkConfig(c))
	recs := reqs(300, 11)
	for i := 0; i < len(recs); i += 50 {
		if err := sk.Write(context.Background(), recs[i:i+50]); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	got := consumed(t, c, 300)
	check(t, got, 300, 11)
	partitions := map[int32]bool{}
	for _, r := range got {
		partitions[r.Partition] = true
	}
	if len(partitions) < 2 {
		t.Errorf("11 sessions used %d partition(s), want them spread by key", len(partitions))
	}
}

func TestUnencodableRecordIsPermanent(t *testing.T) {
	t.Parallel()
	c := cluster(t)
	sk := newSink(t, sinkConfig(c))
	batch := reqs(3, 1)
	batch[1].(*record.Request).DurationMS = math.Inf(1)
	err := sk.Write(context.Background(), batch)
	pe, ok := errors.AsType[*sinks.PartialError](err)
	if !ok || pe.Failed != 1 || !sinks.IsPermanent(err) {
		t.Fatalf("Write = %v, want a permanent partial error for 1 record", err)
	}
	got := consumed(t, c, 2)
	if len(got) != 2 {
		t.Errorf("consumed %d records, want the 2 encodable ones", len(got))
	}
}

// TestBrokerDownThenBack fails every produce request for a while: the pipeline retries, spools
// and, once produce works again, delivers everything, each session in order in one partition.
func TestBrokerDownThenBack(t *testing.T) {
	t.Parallel()
	c := cluster(t)
	var down atomic.Bool
	var refused atomic.Int64
	outage := make(chan struct{})
	down.Store(true)
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !down.Load() {
			return nil, nil, false
		}
		refused.Add(1)
		// Every partition answers "not enough replicas": the write did not happen, and the
		// client retries it until the record delivery timeout fails it back to the pipeline.
		req := kreq.(*kmsg.ProduceRequest)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.NotEnoughReplicas.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	sc := sinkConfig(c)
	sc.Timeout = config.Duration(300 * time.Millisecond)
	sc.BatchSize, sc.FlushInterval = 25, config.Duration(time.Millisecond)
	sc.Retry = config.Retry{InitialInterval: config.Duration(10 * time.Millisecond), MaxInterval: config.Duration(50 * time.Millisecond)}
	// The outage lasts until the pipeline has seen two failed writes (retried and spooled).
	watched := &failWatch{Sink: newSink(t, sc), after: 2, failed: outage}
	out, err := sinks.NewOutput(sc, t.TempDir(), watched, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := sinks.NewPipeline(nil, []sinks.Output{out})
	recs := reqs(400, 9)
	for _, r := range recs[:200] {
		p.Emit(r)
	}
	<-outage
	down.Store(false)
	for _, r := range recs[200:] {
		p.Emit(r)
	}
	got := consumed(t, c, 400)
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	check(t, got, 400, 9)
	if refused.Load() == 0 {
		t.Error("no produce request was refused: the outage did not happen")
	}
	if st := p.Stats()[0]; st.Dropped != 0 || st.Failed != 0 || st.Spooled == 0 || st.Retried == 0 {
		t.Errorf("stats = %+v, want records spooled and retried, nothing dropped or failed", st)
	}
}

// failWatch closes failed once its sink's Write has failed after times.
type failWatch struct {
	sinks.Sink
	after  int
	n      atomic.Int64
	failed chan struct{}
}

func (f *failWatch) Write(ctx context.Context, batch []record.Record) error {
	err := f.Sink.Write(ctx, batch)
	if err != nil && f.n.Add(1) == int64(f.after) {
		close(f.failed)
	}
	return err
}

func TestNewFailsFastOnBadTLSFiles(t *testing.T) {
	t.Parallel()
	sc := config.DefaultSink(kafka.Type)
	kc := kafka.Config{Brokers: []string{"127.0.0.1:1"}, Topic: topic}
	kc.TLS = sinks.TLS{CAFile: "/nonexistent/ca.pem"}
	if _, err := kafka.New(sc, kc, sinks.Settings{}); err == nil {
		t.Error("New with a missing ca_file succeeded, want an error at start")
	}
	kc.TLS = sinks.TLS{}
	kc.SASL = kafka.SASL{Mechanism: kafka.SASLScramSHA512, Username: "u", Password: "p"}
	sk, err := kafka.New(sc, kc, sinks.Settings{})
	if err != nil {
		t.Fatalf("New with SASL SCRAM-SHA-512: %v", err)
	}
	sk.Close(context.Background())
	if err := sk.Write(context.Background(), reqs(1, 1)); !errors.Is(err, sinks.ErrClosed) {
		t.Errorf("Write after Close = %v, want ErrClosed", err)
	}
}
