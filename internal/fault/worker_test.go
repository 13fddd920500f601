package fault

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-run/herald/internal/faultload"
	"github.com/herald-run/herald/internal/subproc"
	"github.com/herald-run/herald/internal/testdb"
)

// stepReport is what faultworker's step posts at the start (/attempt) and
// the end (/done) of each attempt, with when the counter received it.
type stepReport struct {
	EventID string    `json:"event_id"`
	Attempt int       `json:"attempt"`
	Worker  int       `json:"worker"`
	At      time.Time `json:"-"`
}

// same reports whether r and o are reports of one attempt.
func (r stepReport) same(o stepReport) bool {
	return r.EventID == o.EventID && r.Attempt == o.Attempt && r.Worker == o.Worker
}

// stepCounter records the step attempts of every event.
type stepCounter struct {
	mu       sync.Mutex
	attempts map[string][]stepReport
	done     map[string][]stepReport
}

func newStepCounter(t *testing.T) (*stepCounter, string) {
	c := &stepCounter{attempts: map[string][]stepReport{}, done: map[string][]stepReport{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rep stepReport
		if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rep.At = time.Now()
		c.mu.Lock()
		defer c.mu.Unlock()
		switch r.URL.Path {
		case "/attempt":
			c.attempts[rep.EventID] = append(c.attempts[rep.EventID], rep)
		case "/done":
			c.done[rep.EventID] = append(c.done[rep.EventID], rep)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return c, srv.URL
}

// inFlight returns the attempts started and not done, by event.
func (c *stepCounter) inFlight() map[string]stepReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]stepReport{}
	for id, as := range c.attempts {
		for _, a := range as {
			finished := false
			for _, d := range c.done[id] {
				if d.same(a) {
					finished = true
				}
			}
			if !finished {
				out[id] = a
			}
		}
	}
	return out
}

// TestWorkerKilledMidStep SIGKILLs the worker process while two-second steps
// are in flight and starts a new one. The killed attempts time out (the
// function's StepTimeout is 5 s) and are retried on the new worker; every
// run completes exactly once.
func TestWorkerKilledMidStep(t *testing.T) {
	s := newScenario(t, "worker-kill")
	ts := sharedTemporal(t)
	tc := ts.client(t)
	dbURL := testdb.Schema(t)
	h := s.herald("herald", heraldOpts{addr: freeAddr(t), dbURL: dbURL, temporal: ts.hostPort})
	counter, counterURL := newStepCounter(t)
	wo := workerOpts{stepDuration: 2 * time.Second, stepTimeout: 5 * time.Second, counterURL: counterURL}
	w := s.worker("worker-1", h.url, ts.hostPort, wo)

	var (
		total    = pick(4*time.Second, 20*time.Second)
		killFrom = pick(0, 6*time.Second)
		minSteps = pick(5, 20)
	)
	load := s.sendLoad([]string{h.url}, false, pick(150*time.Millisecond, 100*time.Millisecond))
	start := time.Now()
	// Kill once enough steps are in flight (they last two seconds).
	sleepUntil(start.Add(killFrom))
	if !subproc.WaitFor(30*time.Second, 20*time.Millisecond, func() bool { return len(counter.inFlight()) >= minSteps }) {
		t.Fatalf("fewer than %d steps in flight after 30s", minSteps)
	}
	killed := counter.inFlight()
	w.Kill()
	t.Logf("killed worker-1 at %s with %d steps in flight", time.Since(start).Round(time.Millisecond), len(killed))
	time.Sleep(time.Second)
	s.worker("worker-2", h.url, ts.hostPort, wo)
	sleepUntil(start.Add(total))
	load.Stop()

	check(t, checkOpts{scenario: s.name, dbURL: dbURL, temporal: tc, app: s.app, event: s.event, load: load, wait: pick(90*time.Second, 300*time.Second)})

	requireStepsDone(t, counter, load)
	retried, _ := requireRetried(t, counter, killed)
	t.Logf("%d steps killed mid-flight, %d retried to completion by the new worker", len(killed), retried)
	if retried == 0 {
		t.Errorf("no step killed mid-flight was retried: the kill missed the steps")
	}
}

// requireStepsDone checks that the step of every acknowledged event
// completed.
func requireStepsDone(t *testing.T, c *stepCounter, load *faultload.Sender) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	_, acked := load.Ledger()
	for id := range acked {
		if len(c.done[id]) == 0 {
			t.Errorf("event %s: its step never completed (attempts %v)", id, c.attempts[id])
		}
	}
}

// requireRetried checks that every attempt in killed (in flight, by event,
// on a worker that was then killed or stopped) either finished before the
// worker went, or was retried to completion, as a later attempt, on another
// worker. It returns how many were retried, and the start of the first
// later attempt of each.
func requireRetried(t *testing.T, c *stepCounter, killed map[string]stepReport) (retried int, retries map[string]stepReport) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	retries = map[string]stepReport{}
	ids := make([]string, 0, len(killed))
	for id := range killed {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		k := killed[id]
		later, justDone := false, false
		for _, d := range c.done[id] {
			switch {
			case d.Attempt > k.Attempt && d.Worker != k.Worker:
				later = true
			case d.same(k):
				justDone = true // finished between the look and the kill
			}
		}
		switch {
		case later:
			retried++
			for _, a := range c.attempts[id] {
				if first, ok := retries[id]; a.Attempt > k.Attempt && a.Worker != k.Worker && (!ok || a.At.Before(first.At)) {
					retries[id] = a
				}
			}
		case justDone:
		default:
			t.Errorf("event %s: the attempt %d in flight on worker %d was not retried to completion on another worker (done: %v)", id, k.Attempt, k.Worker, c.done[id])
		}
	}
	return retried, retries
}

// TestWorkerKilledDefaultTimeout SIGKILLs the worker while two-second steps
// are in flight, as TestWorkerKilledMidStep does, but with Herald's default
// StepTimeout (five minutes): the killed attempts fail on their heartbeat
// timeout (20 s after they started: they are too short to heartbeat) and are
// retried on a new worker, so every run completes within a minute of the
// kill, exactly once.
func TestWorkerKilledDefaultTimeout(t *testing.T) {
	s := newScenario(t, "worker-kill-default-timeout")
	ts := sharedTemporal(t)
	tc := ts.client(t)
	dbURL := testdb.Schema(t)
	h := s.herald("herald", heraldOpts{addr: freeAddr(t), dbURL: dbURL, temporal: ts.hostPort})
	counter, counterURL := newStepCounter(t)
	wo := workerOpts{stepDuration: 2 * time.Second, counterURL: counterURL} // StepTimeout: Herald's default
	w := s.worker("worker-1", h.url, ts.hostPort, wo)

	var (
		total    = pick(4*time.Second, 20*time.Second)
		killFrom = pick(0, 6*time.Second)
		minSteps = pick(5, 20)
		// The scenario's bound: a step on a worker that dies is retried
		// within 30 s (the heartbeat timeout is 20 s), so every run
		// completes well within a minute of the kill.
		bound = 60 * time.Second
	)
	load := s.sendLoad([]string{h.url}, false, pick(150*time.Millisecond, 100*time.Millisecond))
	start := time.Now()
	sleepUntil(start.Add(killFrom))
	if !subproc.WaitFor(30*time.Second, 20*time.Millisecond, func() bool { return len(counter.inFlight()) >= minSteps }) {
		t.Fatalf("fewer than %d steps in flight after 30s", minSteps)
	}
	killed := counter.inFlight()
	w.Kill()
	killedAt := time.Now()
	t.Logf("killed worker-1 at %s with %d steps in flight", killedAt.Sub(start).Round(time.Millisecond), len(killed))
	time.Sleep(time.Second)
	s.worker("worker-2", h.url, ts.hostPort, wo)
	sleepUntil(start.Add(total))
	load.Stop()

	o := checkOpts{scenario: s.name, dbURL: dbURL, temporal: tc, app: s.app, event: s.event, load: load, wait: pick(90*time.Second, 300*time.Second)}
	// Wait past the bound, so a late run is measured, not just missed.
	last, ok := lastCompletion(t, o, killedAt.Add(bound+30*time.Second))
	switch {
	case !ok:
		t.Errorf("the runs did not all complete within %s of the kill", bound+30*time.Second)
	case last.Sub(killedAt) > bound:
		t.Errorf("the last run completed %s after the kill, want within %s", last.Sub(killedAt).Round(100*time.Millisecond), bound)
	}
	if ok {
		line := fmt.Sprintf("fault: %s: the last run completed %s after the kill", s.name, last.Sub(killedAt).Round(100*time.Millisecond))
		t.Log(line)
		fmt.Println(line)
	}
	check(t, o)

	requireStepsDone(t, counter, load)
	retried, retries := requireRetried(t, counter, killed)
	var slowest time.Duration
	for _, r := range retries {
		slowest = max(slowest, r.At.Sub(killedAt))
	}
	t.Logf("%d steps killed mid-flight, %d retried to completion by the new worker; the last retry started %s after the kill",
		len(killed), retried, slowest.Round(100*time.Millisecond))
	if retried == 0 {
		t.Errorf("no step killed mid-flight was retried: the kill missed the steps")
	}
}

// lastCompletion waits until every stored event of the scenario has a
// Completed run, at most until deadline, and returns when the last of those
// runs ended, as the store recorded it.
func lastCompletion(t *testing.T, o checkOpts, deadline time.Time) (time.Time, bool) {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), o.dbURL)
	if err != nil {
		t.Fatalf("lastCompletion: %v", err)
	}
	defer pool.Close()
	var last time.Time
	done := subproc.WaitFor(time.Until(deadline), 250*time.Millisecond, func() bool {
		st := look(pool, o, false)
		if st.err != nil || len(st.stored) == 0 || !st.storeComplete() {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return pool.QueryRow(ctx, `SELECT max(ended_at) FROM runs WHERE app_id = $1 AND function_id = $2`, o.app, functionID).Scan(&last) == nil
	})
	return last, done
}
