// Command demo serves the demo API that the docker-compose stack puts behind Envoy: a login
// returning a token, a JWT and a PHPSESSID cookie, and endpoints protected by each of them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/apisessions/apisessions/e2e/internal/demo"
)

func main() {
	listen := flag.String("listen", ":8080", "address to serve the demo API on")
	flag.Parse()
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	srv := &http.Server{
		Addr:              *listen,
		Handler:           demo.New(demo.Options{Secret: []byte(os.Getenv("DEMO_JWT_SECRET"))}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	logger.Info("demo API listening", "addr", *listen)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}
