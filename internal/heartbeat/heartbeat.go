// Package heartbeat makes a step on a worker that dies, or that stops past
// its grace period, be retried within seconds instead of at the end of its
// start-to-close timeout (five minutes by default). It is used by the
// workers of users' apps (package herald) and by Herald's own system worker.
//
// Temporal only learns that an activity's worker is gone when one of the
// activity's timeouts fires. Herald's activities are therefore scheduled
// with a heartbeat timeout (Timeout, 20 s: see For), and the Interceptor
// installed on every Herald worker heartbeats for an activity once it has
// run for a while (After, then Every), until it returns. The server counts
// the heartbeat timeout from the attempt's start, then from its last
// heartbeat; when it fires, the attempt fails with a heartbeat timeout and is
// retried under the activity's retry policy, on any worker.
//
// What it costs, per attempt that lasts d (the heartbeat timeout itself is
// enforced by the server: a timer, no call from the worker):
//
//   - d < After (5 s): nothing; no heartbeat is sent.
//   - d ≥ After: one RecordActivityTaskHeartbeat call at After, then one per
//     throttle window of the Temporal SDK (0.8 × Timeout = 16 s): the SDK
//     sends the first heartbeat at once and holds later ones until the window
//     ends. About 1 + (d-5s)/16s calls: 4 for a one-minute step, 19 for five
//     minutes; plus, when the attempt fails, one flush of a held heartbeat.
//
// Side effects of heartbeating that a step can observe: the heartbeat reply
// carries cancellation, so a step that has run past After sees its context
// cancelled when its run is cancelled (it was abandoned anyway: a cancelled
// run does not wait for it), and when Temporal cannot be reached for a whole
// throttle window (its attempt would time out on the server anyway).
//
// The Interceptor also tracks the activities in flight, so that a stopping
// worker can hand back the ones still running at the end of its grace
// period (Abandon): each is failed at once with a retryable error and retried
// elsewhere after its backoff, instead of after its heartbeat timeout.
package heartbeat

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
)

const (
	// Timeout is the heartbeat timeout of Herald's activities: a step whose
	// worker died is retried about this long after the worker's last sign of
	// life (the attempt's start, or its last heartbeat). It must stay well
	// above Every and the network's hiccups; the SDK throttles heartbeats to
	// one per 0.8 × Timeout.
	Timeout = 20 * time.Second
	// After is how long an activity runs before its first heartbeat: shorter
	// activities cost no extra Temporal call.
	After = 5 * time.Second
	// Every is the interval between the Interceptor's heartbeats after the
	// first; the SDK sends at most one per throttle window of them.
	Every = 5 * time.Second
)

// For returns the heartbeat timeout of an activity whose start-to-close
// timeout is startToClose: Timeout, or 0 (none) when startToClose is not
// longer, since the start-to-close timeout then notices a dead worker as
// soon (and Temporal caps the heartbeat timeout to it anyway).
func For(startToClose time.Duration) time.Duration {
	if startToClose > 0 && startToClose <= Timeout {
		return 0
	}
	return Timeout
}

// Completer fails an activity attempt by its task token;
// client.Client.CompleteActivity is one.
type Completer interface {
	CompleteActivity(ctx context.Context, taskToken []byte, result any, err error) error
}

// Interceptor is a worker interceptor that heartbeats for long activities
// and tracks those in flight. Create it with New; install one per worker.
type Interceptor struct {
	interceptor.WorkerInterceptorBase
	complete Completer
	// after and every are After and Every; tests shorten them.
	after, every time.Duration

	mu      sync.Mutex
	running map[*attempt]struct{}
}

// attempt is one activity attempt in flight on this worker.
type attempt struct {
	token []byte
	// returned is set when the attempt returned an error because the worker
	// shut down: it is still handed back, since the process may exit before
	// the SDK reports it.
	returned bool
}

// New returns an Interceptor. complete is used by Abandon; nil means
// Abandon hands nothing back (for test environments).
func New(complete Completer) *Interceptor {
	return newInterceptor(complete, After, Every)
}

func newInterceptor(complete Completer, after, every time.Duration) *Interceptor {
	return &Interceptor{complete: complete, after: after, every: every, running: map[*attempt]struct{}{}}
}

// ErrWorkerStopped is the cause of the failure of an attempt a stopping
// worker handed back. The error reported to Temporal is a retryable
// application error of type "herald.WorkerStopped".
var ErrWorkerStopped = errors.New("herald: the worker stopped before the activity finished (its stop timeout passed); it is retried on another worker")

func stoppedError(cause error) error {
	return temporal.NewApplicationErrorWithOptions(ErrWorkerStopped.Error(), "herald.WorkerStopped", temporal.ApplicationErrorOptions{Cause: cause})
}

// InterceptActivity implements interceptor.WorkerInterceptor.
func (i *Interceptor) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	a := &inbound{root: i}
	a.Next = next
	return a
}

type inbound struct {
	interceptor.ActivityInboundInterceptorBase
	root *Interceptor
	out  *outbound
}

func (a *inbound) Init(next interceptor.ActivityOutboundInterceptor) error {
	a.out = &outbound{}
	a.out.Next = next
	return a.Next.Init(a.out)
}

func (a *inbound) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	info := activity.GetInfo(ctx)
	if info.IsLocalActivity {
		// A local activity runs inside a workflow task: when its worker
		// dies, the workflow task times out and runs elsewhere.
		return a.Next.ExecuteActivity(ctx, in)
	}
	at := &attempt{token: info.TaskToken}
	a.root.mu.Lock()
	a.root.running[at] = struct{}{}
	a.root.mu.Unlock()

	stop := func() {}
	if ht := info.HeartbeatTimeout; ht > 0 && (info.StartToCloseTimeout <= 0 || ht < info.StartToCloseTimeout) {
		stop = a.keepAlive(ctx, min(a.root.after, ht/4), min(a.root.every, ht/4))
	}
	res, err := a.Next.ExecuteActivity(ctx, in)
	stop()

	stopped := err != nil && errors.Is(context.Cause(ctx), worker.ErrWorkerShutdown)
	a.root.mu.Lock()
	if stopped {
		at.returned = true
	} else {
		delete(a.root.running, at)
	}
	a.root.mu.Unlock()
	if stopped {
		err = stoppedError(err)
	}
	return res, err
}

// keepAlive heartbeats for the activity after `after`, then every `every`,
// until the returned function is called or the activity's context is done
// (cancelled, timed out, or its worker shut down: nobody waits for it any
// more). The heartbeats repeat the activity's own last details, so progress
// it recorded is not overwritten.
func (a *inbound) keepAlive(ctx context.Context, after, every time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTimer(after)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			a.out.keepAlive(ctx)
			t.Reset(every)
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// outbound remembers the details of the activity's own heartbeats.
type outbound struct {
	interceptor.ActivityOutboundInterceptorBase
	mu      sync.Mutex
	details []any
}

func (o *outbound) RecordHeartbeat(ctx context.Context, details ...any) {
	o.mu.Lock()
	o.details = details
	o.mu.Unlock()
	o.Next.RecordHeartbeat(ctx, details...)
}

func (o *outbound) keepAlive(ctx context.Context) {
	o.mu.Lock()
	details := o.details
	o.mu.Unlock()
	o.Next.RecordHeartbeat(ctx, details...)
}

// Running returns how many activity attempts are in flight on the worker
// (and, after a stop, not yet handed back).
func (i *Interceptor) Running() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return len(i.running)
}

// Abandon hands back the activity attempts still running on a worker whose
// Stop has returned (its stop timeout passed and their contexts were
// cancelled), and those that returned because of it: each is failed with a
// retryable error (ErrWorkerStopped) so Temporal retries it at once, after
// its backoff, on another worker. The SDK reports the same failure when the
// attempt returns, but the process may exit first, and an attempt that does
// not heed its context never returns: without Abandon both would wait for
// their heartbeat timeout. A repeated report of the same attempt is refused
// by the server (its task token is spent), so the attempt is retried once.
//
// Abandon returns how many attempts it handed back, and the reports that
// failed (other than "already reported"); it waits at most until ctx is done. Call it only after the Temporal
// worker's Stop returned: an attempt still running then is abandoned.
func (i *Interceptor) Abandon(ctx context.Context) (int, error) {
	i.mu.Lock()
	var list []*attempt
	for at := range i.running {
		list = append(list, at)
	}
	i.running = map[*attempt]struct{}{}
	i.mu.Unlock()
	if i.complete == nil || len(list) == 0 {
		return 0, nil
	}
	errs := make([]error, len(list))
	var wg sync.WaitGroup
	for n, at := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := i.complete.CompleteActivity(ctx, at.token, nil, stoppedError(ErrWorkerStopped))
			var spent *serviceerror.NotFound
			if !errors.As(err, &spent) {
				errs[n] = err
			}
		}()
	}
	wg.Wait()
	return len(list), errors.Join(errs...)
}
