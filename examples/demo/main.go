// Command demo is Herald's example worker: it syncs the demo app's functions
// to a running Herald and runs them on Temporal until interrupted. It is a
// process of its own, as a user's app is; Herald does not link it.
//
//	make dev                                  # Herald, Temporal and this worker together
//	herald dev --worker 'go run ./examples/demo'   # the same by hand
//	go run ./examples/demo                    # against a Herald already running
//	go run ./examples/demo -check-replay      # do the recorded runs replay against this code?
//
// Environment: HERALD_URL (default http://127.0.0.1:8288), HERALD_SIGNING_KEY,
// TEMPORAL_ADDRESS (default 127.0.0.1:7233), TEMPORAL_NAMESPACE (default
// "default").
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/herald-run/herald"
	"github.com/herald-run/herald/examples/demo/demoapp"
)

func main() {
	checkReplay := flag.Bool("check-replay", false, "replay the last runs of every demo function against this code and exit: non-zero when a run does not replay (a deploy would break it)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	tc, err := client.DialContext(ctx, client.Options{
		HostPort:  env("TEMPORAL_ADDRESS", "127.0.0.1:7233"),
		Namespace: env("TEMPORAL_NAMESPACE", "default"),
		Logger:    sdklog.NewStructuredLogger(log),
		// No gzip: the worker's calls carry small payloads to a Temporal
		// nearby, where compressing them costs both sides CPU and saves
		// little (the SDK compresses by default; Herald's server does not).
		ConnectionOptions: client.ConnectionOptions{GrpcCompression: &client.GrpcCompressionNone{}},
	})
	if err != nil {
		log.Error("cannot reach Temporal", "err", err)
		os.Exit(1)
	}
	defer tc.Close()

	if *checkReplay {
		report, err := herald.CheckReplay(ctx, herald.CheckReplayOptions{Client: tc, App: demoapp.AppID, Functions: demoapp.Functions()})
		if err != nil {
			log.Error("cannot check replay", "err", err)
			os.Exit(1)
		}
		for fn, n := range report.Checked {
			fmt.Printf("%s: %d run(s) replayed\n", fn, n)
		}
		if err := report.Err(); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("every run replays against this code")
		return
	}

	w, err := herald.NewWorker(herald.WorkerOptions{
		App:        demoapp.AppID,
		HeraldURL:  env("HERALD_URL", "http://127.0.0.1:8288"),
		SigningKey: os.Getenv("HERALD_SIGNING_KEY"),
		Client:     tc,
		Logger:     log,
	})
	if err == nil {
		err = demoapp.Register(w)
	}
	if err == nil {
		// On SIGTERM or Ctrl-C, Run stops polling, lets the steps in flight
		// finish (WorkerOptions.StopTimeout, 25 s by default), hands back
		// those that do not, and returns.
		err = w.Run(ctx)
	}
	if err != nil {
		log.Error("demo worker failed", "err", err)
		os.Exit(1)
	}
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
