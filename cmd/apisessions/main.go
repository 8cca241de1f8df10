// Command apisessions groups the API traffic Envoy sends it over ext_proc into user sessions.
// See the README; the whole program lives in package app so tests can run it in-process.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/apisessions/apisessions/cmd/apisessions/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
