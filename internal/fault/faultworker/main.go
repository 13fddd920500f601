// Command faultworker is the worker the fault tests run in a process of its
// own, so a test can kill it with SIGKILL mid-step. It syncs one app with one
// function, -function, triggered by -event, whose single step "work" sleeps
// -step-duration and reports each attempt's start and end to -counter-url
// (when set), so the test can tell which steps were retried after a kill.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald"
	"github.com/herald-run/herald/step"
)

// Report is what the step posts to the counter at /attempt and /done.
type Report struct {
	EventID string `json:"event_id"`
	Attempt int    `json:"attempt"`
	Worker  int    `json:"worker"` // process id
}

// Result is the step's result and the run's output.
type Result struct {
	EventID string `json:"event_id"`
	Attempt int    `json:"attempt"`
}

// ignoreCancel makes the step sleep its whole -step-duration even when its
// context is cancelled, as a step that does not heed its context would.
var ignoreCancel = flag.Bool("ignore-cancel", false, "the step ignores the cancellation of its context")

// stepper runs the step; its fields come from the flags.
type stepper struct {
	duration time.Duration
	counter  string
	hc       *http.Client
}

// Work is the step: it reports its start, sleeps, reports its end.
func (s *stepper) Work(ctx context.Context, eventID string) (Result, error) {
	r := Report{EventID: eventID, Attempt: int(activity.GetInfo(ctx).Attempt), Worker: os.Getpid()}
	if err := s.report(ctx, "/attempt", r); err != nil {
		return Result{}, err
	}
	if s.duration > 0 && *ignoreCancel {
		time.Sleep(s.duration)
	} else if s.duration > 0 {
		select {
		case <-time.After(s.duration):
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
	}
	if err := s.report(ctx, "/done", r); err != nil {
		return Result{}, err
	}
	return Result{EventID: eventID, Attempt: r.Attempt}, nil
}

func (s *stepper) report(ctx context.Context, path string, r Report) error {
	if s.counter == "" {
		return nil
	}
	body, _ := json.Marshal(r)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.counter+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return fmt.Errorf("report %s: %w", path, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("report %s: %s", path, resp.Status)
	}
	return nil
}

func main() {
	var (
		app         = flag.String("app", "", "app id (required)")
		heraldURL   = flag.String("herald-url", "", "Herald's base URL (required)")
		signingKey  = flag.String("signing-key", "", "Herald's signing key")
		temporal    = flag.String("temporal", "127.0.0.1:7233", "Temporal frontend host:port")
		function    = flag.String("function", "deliver", "id of the function")
		event       = flag.String("event", "fault/load", "event name that triggers the function")
		stepDur     = flag.Duration("step-duration", 0, "how long the step sleeps")
		stepTimeout = flag.Duration("step-timeout", 0, "the function's StepTimeout (0: Herald's default)")
		counter     = flag.String("counter-url", "", "base URL the step reports attempts to (empty: none)")
		stopTimeout = flag.Duration("stop-timeout", 0, "the worker's StopTimeout, its grace period on SIGTERM (0: Herald's default)")
	)
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := run(*app, *heraldURL, *signingKey, *temporal, *function, *event, *stepDur, *stepTimeout, *counter, *stopTimeout, log); err != nil {
		log.Error("faultworker failed", "err", err)
		os.Exit(1)
	}
}

func run(app, heraldURL, signingKey, temporal, function, event string, stepDur, stepTimeout time.Duration, counter string, stopTimeout time.Duration, log *slog.Logger) error {
	if app == "" || heraldURL == "" {
		return fmt.Errorf("-app and -herald-url are required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// A lazy client: the worker may start while Temporal restarts.
	tc, err := client.NewLazyClient(client.Options{HostPort: temporal, Namespace: "default", Logger: sdklog.NewStructuredLogger(log)})
	if err != nil {
		return err
	}
	defer tc.Close()

	s := &stepper{duration: stepDur, counter: counter, hc: &http.Client{Timeout: 5 * time.Second}}
	fn := herald.NewFunction(herald.FunctionOpts{
		ID:          function,
		Triggers:    []herald.Trigger{herald.OnEvent(event)},
		StepTimeout: stepTimeout,
		// Enough attempts to outlive a killed worker and a slow restart.
		Retries: 10,
	}, func(ctx workflow.Context, in herald.Input[map[string]any]) (Result, error) {
		return step.Run[Result](ctx, "work", s.Work, in.Event.ID)
	})
	w, err := herald.NewWorker(herald.WorkerOptions{App: app, HeraldURL: heraldURL, SigningKey: signingKey, Client: tc, Logger: log, StopTimeout: stopTimeout})
	if err != nil {
		return err
	}
	if err := w.Register(fn); err != nil {
		return err
	}
	if *sleeperEvent != "" {
		if err := w.Register(sleeperFunction(*sleeperEvent)); err != nil {
			return err
		}
	}
	if err := w.RegisterSteps(s.Work); err != nil {
		return err
	}
	// Herald may be restarting when the worker starts: retry the sync.
	for {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = w.Start(sctx)
		cancel()
		if err == nil || ctx.Err() != nil {
			break
		}
		log.Warn("start failed, retrying", "err", err)
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stdout, "faultworker polling")
	<-ctx.Done()
	stopping := time.Now()
	w.Stop() // graceful: the steps in flight finish, or are handed back after -stop-timeout
	fmt.Fprintf(os.Stdout, "faultworker stopped in %s\n", time.Since(stopping).Round(time.Millisecond))
	return nil
}

// sleeperEvent, when set, registers sleeperFunction beside -function.
var sleeperEvent = flag.String("sleeper-event", "", "also register the function \"sleeper\", triggered by this event, whose runs stay active until cancelled")

// sleeperFunction is the function "sleeper": each run sleeps an hour on a
// durable timer, so it stays Running until it is cancelled, and a
// cancellation ends it at once (no step is in flight).
func sleeperFunction(event string) *herald.Function {
	return herald.NewFunction(herald.FunctionOpts{
		ID:       "sleeper",
		Triggers: []herald.Trigger{herald.OnEvent(event)},
	}, func(ctx workflow.Context, in herald.Input[map[string]any]) (Result, error) {
		if err := step.Sleep(ctx, "nap", time.Hour); err != nil {
			return Result{}, err
		}
		return Result{EventID: in.Event.ID}, nil
	})
}
