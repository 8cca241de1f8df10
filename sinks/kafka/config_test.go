package kafka_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/apisessions/apisessions/internal/testutil"
	"github.com/apisessions/apisessions/sinks/kafka"
)

// problems returns the lines "apisessions validate" prints for a file holding text.
func problems(t *testing.T, text string) []string {
	return testutil.ConfigProblems(t, text, kafka.Factory.ConfigType())
}

func TestConfigProblems(t *testing.T) {
	t.Parallel()
	const f = "apisessions.yaml"
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{name: "brokers and topic are enough", yaml: "sinks:\n  - {type: kafka, brokers: [\"k:9092\"], topic: t}\n"},
		{
			name: "kafka keys",
			yaml: "sinks:\n  - type: kafka\n    timeout: 30s\n    queue_size: 10000\n    sasl: {username: u}\n" +
				"  - type: kafka\n    brokers: [\"k1\", \"k2:99999\", \"k3:9092\"]\n    topic: \"a topic\"\n    sasl: {mechanism: gssapi}\n" +
				"  - type: kafka\n    brokers: [k:9092]\n    topic: t\n    sasl: {mechanism: scram-sha-512}\n    tls: {key_file: k.pem}\n",
			want: []string{
				f + `:2: sinks[0].brokers: is missing; list at least one broker, e.g. ["kafka-1:9092"]`,
				f + `:2: sinks[0].topic: is missing; name the topic the records go to, e.g. api-sessions`,
				f + `:5: sinks[0].sasl.mechanism: is missing while a username or password is set; use plain, scram-sha-256, scram-sha-512`,
				f + `:7: sinks[1].brokers[0]: "k1" is not a host:port address; write e.g. kafka-1:9092`,
				f + `:7: sinks[1].brokers[1]: "k2:99999" is not a host:port address; write e.g. kafka-1:9092`,
				f + `:8: sinks[1].topic: "a topic" is not a valid Kafka topic name; use letters, digits, ., _ and - (at most 249)`,
				f + `:9: sinks[1].sasl.mechanism: "gssapi" is not a SASL mechanism; use plain, scram-sha-256, scram-sha-512`,
				f + `:13: sinks[2].sasl.username: is missing; SASL scram-sha-512 needs a username`,
				f + `:13: sinks[2].sasl.password: is missing; SASL scram-sha-512 needs a password, e.g. ${KAFKA_PASSWORD}`,
				f + `:14: sinks[2].tls.cert_file: is empty while key_file is set; set both or neither`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tc.want, problems(t, tc.yaml)); diff != "" {
				t.Errorf("problems of %q differ (-want +got):\n%s", tc.yaml, diff)
			}
		})
	}
}
