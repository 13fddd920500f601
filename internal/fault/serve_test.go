package fault

import (
	"net/http"
	"testing"
	"time"

	"github.com/herald-run/herald/internal/faultload"
	"github.com/herald-run/herald/internal/testdb"
)

// TestServeKilledAndRestarted SIGKILLs herald serve twice under load and
// restarts it on the same port: once in the middle of the steady load, once
// just after a burst of events was acknowledged, while the router is starting
// their workflows.
func TestServeKilledAndRestarted(t *testing.T) {
	s := newScenario(t, "serve-kill")
	ts := sharedTemporal(t)
	tc := ts.client(t)
	dbURL := testdb.Schema(t)
	opts := heraldOpts{addr: freeAddr(t), dbURL: dbURL, temporal: ts.hostPort}
	h := s.herald("herald-1", opts)
	s.worker("worker", h.url, ts.hostPort, quickSteps)

	var (
		total    = pick(5*time.Second, 30*time.Second)
		steadyAt = pick(1500*time.Millisecond, 8*time.Second)
		burstAt  = pick(3300*time.Millisecond, 19*time.Second)
		down     = pick(time.Second, 3*time.Second)
		burst    = pick(100, 500)
	)
	load := s.sendLoad([]string{h.url}, false, pick(40*time.Millisecond, 25*time.Millisecond))
	start := time.Now()

	sleepUntil(start.Add(steadyAt))
	h.Kill()
	t.Logf("killed herald-1 at %s (steady load), %d events pending", time.Since(start).Round(time.Millisecond), pending(t, dbURL, s.event))
	time.Sleep(down)
	h = s.herald("herald-2", opts)

	sleepUntil(start.Add(burstAt))
	if !load.Burst(h.url, burst) {
		t.Fatalf("the burst of %d events was not acknowledged", burst)
	}
	h.Kill()
	t.Logf("killed herald-2 at %s, just after a burst of %d events was acknowledged: %d events pending",
		time.Since(start).Round(time.Millisecond), burst, pending(t, dbURL, s.event))
	time.Sleep(down)
	s.herald("herald-3", opts)

	sleepUntil(start.Add(total))
	load.Stop()
	reqs := load.Requests()
	t.Logf("requests: %d, by status: %v", len(reqs), faultload.StatusCounts(reqs))

	if faultload.StatusCounts(reqs)[http.StatusOK] == len(reqs) {
		t.Errorf("every request succeeded: the kills did not happen under load")
	}
	check(t, checkOpts{scenario: s.name, dbURL: dbURL, temporal: tc, app: s.app, event: s.event, load: load, wait: pick(90*time.Second, 300*time.Second)})
}

// TestReplicaKilled runs two herald serve replicas on one database with the
// load split between them, and SIGKILLs one for good. The sender moves its
// traffic to the survivor after errors; the worker reports to the survivor
// (as it would through a load balancer).
func TestReplicaKilled(t *testing.T) {
	s := newScenario(t, "replica-kill")
	ts := sharedTemporal(t)
	tc := ts.client(t)
	dbURL := testdb.Schema(t)
	// One deployment: the replicas share the system task queue.
	a := s.herald("replica-a", heraldOpts{addr: freeAddr(t), dbURL: dbURL, temporal: ts.hostPort})
	b := s.herald("replica-b", heraldOpts{addr: freeAddr(t), dbURL: dbURL, temporal: ts.hostPort})
	s.worker("worker", b.url, ts.hostPort, quickSteps)

	var (
		total  = pick(4*time.Second, 20*time.Second)
		killAt = pick(1500*time.Millisecond, 8*time.Second)
	)
	load := s.sendLoad([]string{a.url, b.url}, true, pick(40*time.Millisecond, 25*time.Millisecond))
	start := time.Now()
	sleepUntil(start.Add(killAt))
	a.Kill()
	killed := time.Now()
	t.Logf("killed replica-a at %s", killed.Sub(start).Round(time.Millisecond))
	sleepUntil(start.Add(total))
	load.Stop()

	reqs := load.Requests()
	var toA, toB int
	for _, r := range faultload.Between(reqs, start, killed) {
		switch r.Target {
		case a.url:
			toA++
		case b.url:
			toB++
		}
	}
	t.Logf("before the kill: %d requests to replica-a, %d to replica-b; all requests by status: %v", toA, toB, faultload.StatusCounts(reqs))
	if toA == 0 || toB == 0 {
		t.Errorf("the load was not split between the replicas: %d to a, %d to b", toA, toB)
	}
	// Once the sender has seen replica-a fail, the survivor answers everything.
	after := faultload.Between(reqs, killed.Add(500*time.Millisecond), time.Now())
	for _, r := range after {
		if r.Target != b.url || r.Status != http.StatusOK {
			t.Errorf("request at +%s after the kill to %s: status %d %s", r.Start.Sub(killed).Round(time.Millisecond), r.Target, r.Status, r.Err)
		}
	}
	if len(after) == 0 {
		t.Errorf("no request after the kill")
	}
	check(t, checkOpts{scenario: s.name, dbURL: dbURL, temporal: tc, app: s.app, event: s.event, load: load, wait: pick(90*time.Second, 300*time.Second)})
}
