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
