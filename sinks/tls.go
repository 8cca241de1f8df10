package sinks

import "github.com/apisessions/apisessions/config"

// TLS is the client side of TLS to a webhook or Kafka: the tls key of their options, built
// into a *tls.Config by tlsclient.Config. It is the shape every TLS client of the program
// shares (config.ClientTLS).
type TLS = config.ClientTLS
