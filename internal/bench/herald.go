package main

import (
	"context"
	"log"

	"go.temporal.io/sdk/client"

	"github.com/herald-run/herald/ingest"
	"github.com/herald-run/herald/internal/server"
	"github.com/herald-run/herald/internal/temporaltest"
	"github.com/herald-run/herald/router"
)

// startDevServer starts a Temporal dev server for one phase and returns its
// client and the function that stops it.
func startDevServer(ctx context.Context) (client.Client, func()) {
	ds, err := temporaltest.Start(ctx, temporaltest.Options{})
	if err != nil {
		log.Fatalf("bench: temporal dev server: %v", err)
	}
	return ds.Client(), func() { _ = ds.Stop() }
}

// runHerald runs Herald (API, router, system worker) on b's store against
// tc, and returns its URL and the function that stops it.
func (b *bench) runHerald(ctx context.Context, tc client.Client, rc router.Config) (url string, stop func()) {
	runCtx, cancel := context.WithCancel(ctx)
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- server.Run(runCtx, server.Options{
			Addr: "127.0.0.1:0", Store: b.driver, Temporal: tc,
			Ingest: ingest.Config{AllowAnyEventKey: true},
			Router: rc,
			Ready:  func(_ context.Context, url string) { ready <- url },
		})
	}()
	select {
	case url = <-ready:
	case err := <-done:
		log.Fatalf("bench: herald did not start: %v", err)
	}
	return url, func() {
		cancel()
		if err := <-done; err != nil {
			log.Fatalf("bench: herald: %v", err)
		}
	}
}
