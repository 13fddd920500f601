package fault

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/herald-run/herald/internal/faultload"
	"github.com/herald-run/herald/internal/subproc"
	"github.com/herald-run/herald/internal/testdb"
)

// readiness is one GET /readyz.
type readiness struct {
	status  int
	checks  map[string]string
	latency time.Duration
	err     error
}

// pollReady asks /readyz about twice a second until the deadline.
func pollReady(baseURL string, until time.Time) []readiness {
	var ready []readiness
	for time.Until(until) > 0 {
		ready = append(ready, getReady(baseURL))
		time.Sleep(min(500*time.Millisecond, time.Until(until)))
	}
	return ready
}

// requireStoreUnready fails the test unless every /readyz answer of ready
// was 503 naming the store as not ok.
func requireStoreUnready(t *testing.T, ready []readiness, during string) {
	t.Helper()
	if len(ready) == 0 {
		t.Errorf("no /readyz during %s", during)
	}
	for i, r := range ready {
		if r.err != nil || r.status != http.StatusServiceUnavailable || r.checks["store"] == "ok" || r.checks["store"] == "" {
			t.Errorf("/readyz #%d during %s: status %d checks %v err %v (after %s)", i, during, r.status, r.checks, r.err, r.latency.Round(time.Millisecond))
		}
	}
}

// requireRecovery fails the test unless a request sent after since gets 200
// within 30 s: ingest recovers by itself.
func requireRecovery(t *testing.T, load *faultload.Sender, since time.Time, event string) {
	t.Helper()
	recovered := subproc.WaitFor(30*time.Second, 100*time.Millisecond, func() bool {
		for _, r := range faultload.Between(load.Requests(), since, time.Now()) {
			if r.Status == http.StatusOK {
				return true
			}
		}
		return false
	})
	if !recovered {
		t.Errorf("no request got 200 within 30s after %s", event)
		return
	}
	t.Logf("ingest answered 200 again %s after %s", time.Since(since).Round(100*time.Millisecond), event)
}

func getReady(baseURL string) readiness {
	start := time.Now()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(baseURL + "/readyz")
	r := readiness{err: err}
	if err == nil {
		var body struct {
			Checks map[string]string `json:"checks"`
		}
		raw, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		_ = json.Unmarshal(raw, &body)
		r.status, r.checks = resp.StatusCode, body.Checks
	}
	r.latency = time.Since(start)
	return r
}

// TestTemporalOutage stops the Temporal dev server mid-load and starts it
// again on the same port with the same database file. Ingest does not need
// Temporal: every request answers 200 throughout, and every event is
// dispatched once Temporal is back.
func TestTemporalOutage(t *testing.T) {
	s := newScenario(t, "temporal-outage")
	ts, err := newTemporalServer(filepath.Join(s.dir, "temporal"), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.stop)
	tc := ts.client(t)
	dbURL := testdb.Schema(t)
	h := s.herald("herald", heraldOpts{addr: freeAddr(t), dbURL: dbURL, temporal: ts.hostPort})
	s.worker("worker", h.url, ts.hostPort, quickSteps)

	var (
		before = pick(2*time.Second, 5*time.Second)
		outage = pick(8*time.Second, 30*time.Second)
		after  = pick(1500*time.Millisecond, 5*time.Second)
	)
	// A dev server with a database file runs fewer workflows a second than
	// one in memory: a lighter load, or the backlog takes minutes to drain.
	load := s.sendLoad([]string{h.url}, false, pick(80*time.Millisecond, 50*time.Millisecond))
	start := time.Now()
	sleepUntil(start.Add(before))
	ts.stop()
	down := time.Now()
	t.Logf("Temporal stopped at %s", down.Sub(start).Round(time.Millisecond))

	// /readyz names Temporal while it is away.
	sawNotReady := false
	for time.Until(down.Add(outage)) > 0 {
		r := getReady(h.url)
		if r.status == http.StatusServiceUnavailable && r.checks["temporal"] != "ok" && r.checks["store"] == "ok" {
			sawNotReady = true
		}
		time.Sleep(min(time.Second, time.Until(down.Add(outage))))
	}
	if !sawNotReady {
		t.Errorf("/readyz never reported Temporal as not ready during the outage")
	}
	up := time.Now()
	if err := ts.start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Temporal back at %s (stopped %s)", time.Since(start).Round(time.Millisecond), up.Sub(down).Round(time.Millisecond))
	time.Sleep(after)
	load.Stop()

	reqs := load.Requests()
	during := faultload.Between(reqs, down, up)
	t.Logf("requests: %d, %d during the outage; by status: %v", len(reqs), len(during), faultload.StatusCounts(reqs))
	if len(during) == 0 {
		t.Errorf("no request during the outage")
	}
	for _, r := range reqs {
		if r.Status != http.StatusOK {
			t.Errorf("request at %s (outage %s..%s): status %d %s", r.Start.Sub(start).Round(time.Millisecond),
				down.Sub(start).Round(time.Millisecond), up.Sub(start).Round(time.Millisecond), r.Status, r.Err)
		}
	}
	check(t, checkOpts{scenario: s.name, dbURL: dbURL, temporal: tc, app: s.app, event: s.event, load: load, wait: pick(90*time.Second, 300*time.Second)})
}

// TestPostgresOutage stops a private PostgreSQL cluster mid-load (pg_ctl stop
// -m immediate: a crash) and starts it again. While it is down, ingest
// answers 503 quickly and /readyz names the store; when it is back, Herald
// recovers by itself: requests get 200 and pending events are dispatched.
func TestPostgresOutage(t *testing.T) {
	s := newScenario(t, "postgres-outage")
	pg := newPGCluster(t)
	ts := sharedTemporal(t)
	tc := ts.client(t)
	h := s.herald("herald", heraldOpts{addr: freeAddr(t), dbURL: pg.URL(), temporal: ts.hostPort})
	s.worker("worker", h.url, ts.hostPort, quickSteps)

	var (
		before = pick(2*time.Second, 5*time.Second)
		outage = pick(4*time.Second, 15*time.Second)
		after  = pick(2*time.Second, 5*time.Second)
		// The longest an ingest request may take while the store is down.
		maxLatency = 1500 * time.Millisecond
	)
	load := s.sendLoad([]string{h.url}, false, pick(40*time.Millisecond, 25*time.Millisecond))
	start := time.Now()
	sleepUntil(start.Add(before))
	pg.stopImmediate()
	down := time.Now()
	t.Logf("PostgreSQL stopped at %s", down.Sub(start).Round(time.Millisecond))

	ready := pollReady(h.url, down.Add(outage))
	up := time.Now()
	pg.start()
	back := time.Now()
	t.Logf("PostgreSQL back at %s (stopped %s)", back.Sub(start).Round(time.Millisecond), up.Sub(down).Round(time.Millisecond))
	requireRecovery(t, load, back, "PostgreSQL came back")
	time.Sleep(after)
	load.Stop()

	requireStoreUnready(t, ready, "the outage")
	reqs := load.Requests()
	during := faultload.Between(reqs, down, up)
	t.Logf("requests: %d, %d during the outage; during it by status: %v; all by status: %v", len(reqs), len(during), faultload.StatusCounts(during), faultload.StatusCounts(reqs))
	if len(during) == 0 {
		t.Errorf("no request during the outage")
	}
	var slowest time.Duration
	for _, r := range during {
		slowest = max(slowest, r.Latency)
		finished := r.Start.Add(r.Latency)
		switch {
		case r.Latency > maxLatency:
			t.Errorf("request at %s during the outage took %s (status %d %s)", r.Start.Sub(start).Round(time.Millisecond), r.Latency.Round(time.Millisecond), r.Status, r.Err)
		case finished.Before(up) && r.Status != http.StatusServiceUnavailable:
			t.Errorf("request at %s during the outage: status %d, want 503 (%s)", r.Start.Sub(start).Round(time.Millisecond), r.Status, r.Err)
		}
	}
	t.Logf("slowest request during the outage: %s", slowest.Round(time.Millisecond))
	check(t, checkOpts{scenario: s.name, dbURL: pg.URL(), temporal: tc, app: s.app, event: s.event, load: load, wait: pick(90*time.Second, 300*time.Second)})
}
