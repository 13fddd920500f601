// Package temporalx is the one door from Herald's server to Temporal. Every
// call the server makes (starting runs, signal-with-start of debounce, batch
// and semaphore workflows, signals to waiting runs, cancellation, describe,
// cron schedules, search attributes, health, and Herald's own system worker)
// goes through a [Client]. The router, the registry and the HTTP API each
// name the few methods they use in an interface of their own, so each can be
// tested against a fake of just that.
//
// The SDK side (user workers) does not use this package: a worker's calls to
// Temporal are the Temporal SDK's own.
package temporalx

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
)

// Typed keys of Herald's search attributes.
var (
	AttrApp       = temporal.NewSearchAttributeKeyKeyword("HeraldApp")
	AttrFunction  = temporal.NewSearchAttributeKeyKeyword("HeraldFunction")
	AttrEventName = temporal.NewSearchAttributeKeyKeyword("HeraldEventName")
	AttrEventID   = temporal.NewSearchAttributeKeyKeyword("HeraldEventID")
)

// SearchAttributes are the custom search attributes every Herald run carries,
// all of type Keyword, so runs can be found in the Temporal UI by app,
// function, event name and event id.
var SearchAttributes = []string{"HeraldApp", "HeraldFunction", "HeraldEventName", "HeraldEventID"}

// DevServerTuning are the dynamic-config flags Herald gives a Temporal dev
// server. History shards read their task queues at most 20 times a second by
// default, which puts about 50 ms between the steps of a busy run (a step
// that waits for a concurrency slot makes several such hops); a production
// cluster is tuned by its operator.
var DevServerTuning = []string{
	"--dynamic-config-value", "history.transferProcessorMaxPollRPS=1000",
	"--dynamic-config-value", "history.timerProcessorMaxPollRPS=1000",
}

// DevServerFile are the flags Herald gives a dev server that keeps its state
// in a SQLite file: WAL mode, with every commit still synced to disk
// (synchronous=FULL, as with SQLite's default rollback journal), but appended
// to the log instead of copying pages to a journal first. With the example
// worker, 600 signups went from 16.6 to 32.4 completed runs a second on 2
// cores.
var DevServerFile = []string{"--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=full"}

// Compression names a gRPC compression of Herald's calls to Temporal: "none"
// (Herald's default) or "gzip" (the Temporal SDK's default).
//
// Herald's calls carry events and step results of a few hundred bytes, to a
// Temporal server on the same host or network. Gzip then saves little
// bandwidth and costs CPU on both sides, the server's included: it
// compresses its answers, workflow histories among them, for a client that
// compresses. With the example worker on a tuned dev server, 1,200 signups
// completed at 45.8 runs/s without compression and 42.9 with gzip (the means
// of four interleaved runs each). Gzip is for a slow link.
type Compression string

// The compressions Herald's Temporal clients accept.
const (
	CompressionNone Compression = "none"
	CompressionGzip Compression = "gzip"
)

// ConnectionOptions returns the SDK's connection options for c, or an error
// naming the accepted values.
func (c Compression) ConnectionOptions() (client.ConnectionOptions, error) {
	switch c {
	case CompressionNone:
		return client.ConnectionOptions{GrpcCompression: &client.GrpcCompressionNone{}}, nil
	case CompressionGzip:
		return client.ConnectionOptions{GrpcCompression: &client.GrpcCompressionGzip{}}, nil
	}
	return client.ConnectionOptions{}, fmt.Errorf("gRPC compression %q: must be %q or %q", string(c), CompressionNone, CompressionGzip)
}

// NewLazyClient returns a client that connects on first use, so Herald can
// start (and accept events) while Temporal is still down. Interceptors (such
// as the tracing one) are added to every call.
func NewLazyClient(address, namespace string, compression Compression, log *slog.Logger, interceptors ...interceptor.ClientInterceptor) (client.Client, error) {
	conn, err := compression.ConnectionOptions()
	if err != nil {
		return nil, fmt.Errorf("temporal client for %s: %w", address, err)
	}
	c, err := client.NewLazyClient(client.Options{
		HostPort:          address,
		Namespace:         namespace,
		Logger:            sdklog.NewStructuredLogger(log),
		Interceptors:      interceptors,
		ConnectionOptions: conn,
	})
	if err != nil {
		return nil, fmt.Errorf("temporal client for %s: %w", address, err)
	}
	return c, nil
}

// HealthCheck returns a readiness check that asks Temporal's frontend for its
// health.
func HealthCheck(c client.Client) func(context.Context) error {
	return func(ctx context.Context) error {
		if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
			return fmt.Errorf("temporal: %w", err)
		}
		return nil
	}
}

// Reachable reports whether something accepts TCP connections at address.
func Reachable(address string, timeout time.Duration) bool {
	conn, err := net.DialTimeout("tcp", address, timeout)
	if err != nil {
		return false
	}
	_ = conn.Close()
	return true
}

// EnsureSearchAttributes registers Herald's search attributes on namespace
// where they are missing. It is idempotent.
func EnsureSearchAttributes(ctx context.Context, c client.Client, namespace string) error {
	existing, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("list search attributes of namespace %q: %w", namespace, err)
	}
	missing := map[string]enumspb.IndexedValueType{}
	for _, name := range SearchAttributes {
		if _, ok := existing.GetCustomAttributes()[name]; !ok {
			missing[name] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
		}
	}
	if len(missing) == 0 {
		return nil
	}
	_, err = c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace:        namespace,
		SearchAttributes: missing,
	})
	if err != nil {
		return fmt.Errorf("add search attributes to namespace %q: %w", namespace, err)
	}
	return nil
}
