package fault

import (
	"fmt"
	"net/http"
	"sort"
	"syscall"
	"testing"
	"time"

	heraldsdk "github.com/herald-run/herald"
	"github.com/herald-run/herald/internal/faultload"
	"github.com/herald-run/herald/internal/subproc"
	"github.com/herald-run/herald/internal/testdb"
)

// sigterm sends SIGTERM to a worker and waits until it exits, at most
// limit (then it is killed); it returns how long the worker took.
func sigterm(t *testing.T, p *proc, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.Done():
		return time.Since(start)
	case <-time.After(limit):
		t.Errorf("%s did not exit within %s of SIGTERM; killed", p.Name, limit)
		p.Kill()
		return time.Since(start)
	}
}

// inFlightOn returns the attempts in flight on the worker with process id
// pid, by event.
func (c *stepCounter) inFlightOn(pid int) map[string]stepReport {
	out := map[string]stepReport{}
	for id, a := range c.inFlight() {
		if a.Worker == pid {
			out[id] = a
		}
	}
	return out
}

// acks returns when each acknowledged event was acknowledged.
func acks(load *faultload.Sender) map[string]time.Time {
	out := map[string]time.Time{}
	for _, r := range load.Requests() {
		if r.Status != http.StatusOK {
			continue
		}
		for _, id := range r.IDs {
			if _, ok := out[id]; !ok {
				out[id] = r.Start.Add(r.Latency)
			}
		}
	}
	return out
}

// TestWorkerSIGTERM restarts the worker the way a rolling deploy does, twice,
// under steady load: first the replacement starts and then the old worker
// gets SIGTERM; then the old worker gets SIGTERM and the replacement starts
// right after. A stopping worker stops polling and lets its steps finish
// (WorkerOptions.StopTimeout, default 25 s; the steps take 2 s), so no
// attempt is interrupted, no step fails, no run waits more than the grace
// period, and every run completes exactly once.
func TestWorkerSIGTERM(t *testing.T) {
	s := newScenario(t, "worker-sigterm")
	ts := sharedTemporal(t)
	tc := ts.client(t)
	dbURL := testdb.Schema(t)
	h := s.herald("herald", heraldOpts{addr: freeAddr(t), dbURL: dbURL, temporal: ts.hostPort})
	counter, counterURL := newStepCounter(t)
	// Herald's defaults: StepTimeout 5 minutes, StopTimeout 25 s.
	wo := workerOpts{stepDuration: 2 * time.Second, counterURL: counterURL}
	grace := heraldsdk.DefaultStopTimeout

	var (
		firstAt  = pick(1500*time.Millisecond, 5*time.Second)
		secondAt = pick(5*time.Second, 15*time.Second)
		total    = pick(8*time.Second, 25*time.Second)
		minSteps = pick(3, 10)
	)
	w1 := s.worker("worker-1", h.url, ts.hostPort, wo)
	load := s.sendLoad([]string{h.url}, false, pick(100*time.Millisecond, 60*time.Millisecond))
	start := time.Now()
	type stop struct {
		name     string
		inFlight int
		took     time.Duration
	}
	var stops []stop

	// The replacement first, then SIGTERM to the old worker.
	sleepUntil(start.Add(firstAt))
	if !subproc.WaitFor(30*time.Second, 20*time.Millisecond, func() bool { return len(counter.inFlightOn(w1.Pid())) >= minSteps }) {
		t.Fatalf("fewer than %d steps in flight on worker-1 after 30s", minSteps)
	}
	w2 := s.worker("worker-2", h.url, ts.hostPort, wo)
	n := len(counter.inFlightOn(w1.Pid()))
	stops = append(stops, stop{"worker-1", n, sigterm(t, w1, grace+15*time.Second)})

	// SIGTERM first, the replacement right after.
	sleepUntil(start.Add(secondAt))
	if !subproc.WaitFor(30*time.Second, 20*time.Millisecond, func() bool { return len(counter.inFlightOn(w2.Pid())) >= minSteps }) {
		t.Fatalf("fewer than %d steps in flight on worker-2 after 30s", minSteps)
	}
	n = len(counter.inFlightOn(w2.Pid()))
	took := make(chan time.Duration, 1)
	go func() { took <- sigterm(t, w2, grace+15*time.Second) }()
	s.worker("worker-3", h.url, ts.hostPort, wo)
	stops = append(stops, stop{"worker-2", n, <-took})

	sleepUntil(start.Add(total))
	load.Stop()
	for _, st := range stops {
		t.Logf("%s got SIGTERM with %d steps in flight and exited %s later", st.name, st.inFlight, st.took.Round(time.Millisecond))
		if st.took > grace {
			t.Errorf("%s took %s to stop, more than its grace period %s", st.name, st.took.Round(time.Millisecond), grace)
		}
	}
	check(t, checkOpts{scenario: s.name, dbURL: dbURL, temporal: tc, app: s.app, event: s.event, load: load, wait: pick(90*time.Second, 300*time.Second)})
	requireStepsDone(t, counter, load)

	// No attempt was interrupted: every attempt that started finished.
	// An attempt after the first is counted: it would be one the stop
	// interrupted (caught above), or a task the stopping worker had been
	// handed as it stopped polling, which it drops (then retried after its
	// heartbeat timeout, within the grace period: the delay check below).
	interrupted := counter.inFlight()
	ids := make([]string, 0, len(interrupted))
	for id := range interrupted {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		t.Errorf("event %s: attempt %d on worker %d started and never finished", id, interrupted[id].Attempt, interrupted[id].Worker)
	}
	counter.mu.Lock()
	later, attempts := 0, 0
	var delays []time.Duration
	acked := acks(load)
	for id, as := range counter.attempts {
		attempts += len(as)
		for _, a := range as {
			if a.Attempt > 1 {
				later++
				t.Logf("event %s: attempt %d on worker %d (attempts: %v)", id, a.Attempt, a.Worker, as)
			}
		}
		if done := counter.done[id]; len(done) > 0 && !acked[id].IsZero() {
			delays = append(delays, done[len(done)-1].At.Sub(acked[id]))
		}
	}
	counter.mu.Unlock()
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	if len(delays) == 0 {
		t.Fatalf("no step completed for an acknowledged event")
	}
	worst := delays[len(delays)-1]
	line := fmt.Sprintf("fault: %s: %d step attempts, %d interrupted, %d beyond the first; from acknowledgement to the step's end: median %s, max %s (grace period %s)",
		s.name, attempts, len(interrupted), later, delays[len(delays)/2].Round(10*time.Millisecond), worst.Round(10*time.Millisecond), grace)
	t.Log(line)
	fmt.Println(line)
	if worst > grace {
		t.Errorf("a run waited %s from its acknowledgement to the end of its step, more than the grace period %s", worst.Round(10*time.Millisecond), grace)
	}
}

// TestWorkerStopTimeout stops a worker whose steps outlast its grace period
// (a minute-long step that ignores the cancellation of its context,
// StopTimeout 2 s): when the grace period is over, the steps' contexts are
// cancelled and the worker hands the attempts back to Temporal before it
// exits, so the replacement retries them within seconds: before the 20 s
// heartbeat timeout a dead worker would cost, long before the default
// StepTimeout of five minutes. Every run completes exactly once. In the
// full version the replacement's steps take 30 s, longer than the heartbeat
// timeout: the worker's heartbeats keep them alive on their first attempt.
func TestWorkerStopTimeout(t *testing.T) {
	s := newScenario(t, "worker-stop-timeout")
	ts := sharedTemporal(t)
	tc := ts.client(t)
	dbURL := testdb.Schema(t)
	h := s.herald("herald", heraldOpts{addr: freeAddr(t), dbURL: dbURL, temporal: ts.hostPort})
	counter, counterURL := newStepCounter(t)
	const grace = 2 * time.Second
	// faultworker's step lasts -step-duration of the process that runs it:
	// a minute on the old worker, a second on the replacement.
	// A step that heeds its context returns when it is cancelled, and the
	// SDK reports the failure itself if the process lives long enough; one
	// that does not is only handed back by the worker.
	w1 := s.worker("worker-1", h.url, ts.hostPort, workerOpts{stepDuration: time.Minute, counterURL: counterURL, stopTimeout: grace, ignoreCancel: true})
	var (
		minSteps = pick(4, 15)
		// The bound: well under the heartbeat timeout (20 s), which is what
		// a step that was not handed back would wait.
		bound = 10 * time.Second
	)
	load := s.sendLoad([]string{h.url}, false, pick(150*time.Millisecond, 100*time.Millisecond))
	if !subproc.WaitFor(30*time.Second, 20*time.Millisecond, func() bool { return len(counter.inFlightOn(w1.Pid())) >= minSteps }) {
		t.Fatalf("fewer than %d steps in flight on worker-1 after 30s", minSteps)
	}
	// The replacement's steps take a second; in the full version 30 s,
	// longer than the 20 s heartbeat timeout: they finish on their first
	// attempt only if the worker's heartbeats keep them alive.
	s.worker("worker-2", h.url, ts.hostPort, workerOpts{stepDuration: pick(time.Second, 30*time.Second), counterURL: counterURL})
	inFlight := counter.inFlightOn(w1.Pid())
	took := sigterm(t, w1, grace+15*time.Second)
	exited := time.Now()
	t.Logf("worker-1 got SIGTERM with %d minute-long steps in flight and exited %s later", len(inFlight), took.Round(time.Millisecond))
	if took < grace {
		t.Errorf("worker-1 exited %s after SIGTERM, before its grace period of %s was over, with its steps still running", took.Round(time.Millisecond), grace)
	}
	time.Sleep(time.Second)
	load.Stop()

	check(t, checkOpts{scenario: s.name, dbURL: dbURL, temporal: tc, app: s.app, event: s.event, load: load, wait: pick(90*time.Second, 300*time.Second)})
	requireStepsDone(t, counter, load)
	retried, retries := requireRetried(t, counter, inFlight)
	var slowest time.Duration
	for id, r := range retries {
		d := r.At.Sub(exited)
		slowest = max(slowest, d)
		if d > bound {
			t.Errorf("event %s: the step handed back by worker-1 was retried %s after worker-1 exited, want within %s", id, d.Round(100*time.Millisecond), bound)
		}
	}
	line := fmt.Sprintf("fault: %s: %d steps still running at the end of the %s grace period, %d retried on the replacement, the last %s after the old worker exited",
		s.name, len(inFlight), grace, retried, slowest.Round(100*time.Millisecond))
	t.Log(line)
	fmt.Println(line)
	if retried != len(inFlight) {
		t.Errorf("%d steps were in flight on worker-1 (a minute long: none could finish), %d were retried", len(inFlight), retried)
	}
	// The replacement ran each step once: the retry of a handed-back
	// attempt, or the first attempt.
	counter.mu.Lock()
	defer counter.mu.Unlock()
	for id, as := range counter.attempts {
		on2 := 0
		for _, a := range as {
			if a.Worker != w1.Pid() {
				on2++
			}
		}
		if on2 > 1 {
			t.Errorf("event %s: %d attempts on the replacement (attempts: %v)", id, on2, as)
		}
	}
}
