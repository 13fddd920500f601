package fault

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/herald-run/herald/internal/testdb"
)

// stepReport is what faultworker's step posts at the start (/attempt) and
// the end (/done) of each attempt.
type stepReport struct {
	EventID string `json:"event_id"`
	Attempt int    `json:"attempt"`
	Worker  int    `json:"worker"`
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
				if d.Attempt == a.Attempt && d.Worker == a.Worker {
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
	if !waitFor(30*time.Second, 20*time.Millisecond, func() bool { return len(counter.inFlight()) >= minSteps }) {
		t.Fatalf("fewer than %d steps in flight after 30s", minSteps)
	}
	killed := counter.inFlight()
	w.kill()
	t.Logf("killed worker-1 at %s with %d steps in flight", time.Since(start).Round(time.Millisecond), len(killed))
	time.Sleep(time.Second)
	s.worker("worker-2", h.url, ts.hostPort, wo)
	sleepUntil(start.Add(total))
	load.Stop()

	check(t, checkOpts{scenario: s.name, dbURL: dbURL, temporal: tc, app: s.app, event: s.event, load: load, wait: pick(90*time.Second, 300*time.Second)})

	counter.mu.Lock()
	defer counter.mu.Unlock()
	_, acked := load.ledger()
	for id := range acked {
		if len(counter.done[id]) == 0 {
			t.Errorf("event %s: its step never completed (attempts %v)", id, counter.attempts[id])
		}
	}
	retried := 0
	ids := make([]string, 0, len(killed))
	for id := range killed {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		k := killed[id]
		later, justDone := false, false
		for _, d := range counter.done[id] {
			switch {
			case d.Attempt > k.Attempt && d.Worker != k.Worker:
				later = true
			case d == k:
				justDone = true // finished between the look and the kill
			}
		}
		switch {
		case later:
			retried++
		case justDone:
		default:
			t.Errorf("event %s: the attempt %d killed on worker %d was not retried to completion on another worker (done: %v)", id, k.Attempt, k.Worker, counter.done[id])
		}
	}
	t.Logf("%d steps killed mid-flight, %d retried to completion by the new worker", len(killed), retried)
	if retried == 0 {
		t.Errorf("no step killed mid-flight was retried: the kill missed the steps")
	}
}
