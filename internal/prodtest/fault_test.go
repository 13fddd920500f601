package prodtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/herald-run/herald/internal/faultload"
	"github.com/herald-run/herald/internal/subproc"
	"github.com/herald-run/herald/internal/wire"
)

// The fault scenarios of internal/fault, on the production topology: the
// real Temporal server on PostgreSQL killed with SIGKILL and restarted, and
// one of two Herald replicas killed. Each prints
//
//	fault: prod-<scenario> sent=N acked=N stored=N runs=N duplicates=N lost=N
//
// with the invariants of internal/fault: every acknowledged event is stored;
// every stored event has exactly one run row, Completed, and exactly one
// completed workflow execution with its herald/function.finished event.

// faultFunction is the fault worker's function.
const faultFunction = "deliver"

type faultScenario struct {
	t     *testing.T
	name  string
	app   string
	event string
}

func newFaultScenario(t *testing.T, name string) *faultScenario {
	return &faultScenario{t: t, name: name,
		app:   fmt.Sprintf("prod-%s-%d", name, time.Now().UnixMilli()%1000000),
		event: "prod/" + name}
}

// worker starts the fault worker for the scenario's app, reporting to
// Herald through the balancer.
func (s *faultScenario) worker() *Proc {
	t := s.t
	p, err := startProc("faultworker-"+s.name, filepath.Join(t.TempDir(), "faultworker.log"), baseEnv(), faultWorker,
		"-app", s.app, "-herald-url", topo.LB.URL, "-signing-key", SigningKey, "-temporal", topo.Temporal,
		"-function", faultFunction, "-event", s.event, "-step-timeout", "10s")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	if !subproc.WaitFor(60*time.Second, 50*time.Millisecond, func() bool { return p.Exited() || p.LogContains("faultworker polling") }) || p.Exited() {
		t.Fatalf("the fault worker did not start:\n%s", p.Tail(40))
	}
	return p
}

// TestTemporalKilled SIGKILLs the Temporal server mid-load, keeps it down,
// and starts it again on the same ports and databases. Ingest does not need
// Temporal: both replicas answer 200 throughout and report Temporal not
// ready; every event runs once when the server is back.
func TestTemporalKilled(t *testing.T) {
	s := newFaultScenario(t, "temporal-kill")
	s.worker()
	targets := []string{topo.Replicas[0].URL, topo.Replicas[1].URL}
	load := faultload.Start(faultload.Options{Targets: targets, EventKey: EventKey, Event: s.event, Prefix: s.name, Interval: 50 * time.Millisecond})
	t.Cleanup(load.Stop)
	start := time.Now()
	time.Sleep(3 * time.Second)
	topo.KillTemporal()
	down := time.Now()
	t.Logf("Temporal server killed at %s", down.Sub(start).Round(time.Millisecond))

	sawNotReady := map[string]bool{}
	for time.Since(down) < 10*time.Second {
		for _, u := range targets {
			if status, checks := readyz(u); status == http.StatusServiceUnavailable && checks["temporal"] != "ok" && checks["store"] == "ok" {
				sawNotReady[u] = true
			}
		}
		time.Sleep(time.Second)
	}
	up := time.Now()
	if err := topo.StartTemporal(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("Temporal server back at %s (down %s, healthy after %s)", time.Since(start).Round(time.Millisecond),
		up.Sub(down).Round(time.Millisecond), time.Since(up).Round(time.Millisecond))
	for _, u := range targets {
		if !sawNotReady[u] {
			t.Errorf("%s: /readyz never reported Temporal as not ready while the server was down", u)
		}
	}
	time.Sleep(3 * time.Second)
	load.Stop()

	reqs := load.Requests()
	during := faultload.Between(reqs, down, up)
	t.Logf("requests: %d, %d while Temporal was down; by status: %v", len(reqs), len(during), faultload.StatusCounts(reqs))
	if len(during) == 0 {
		t.Errorf("no request while Temporal was down")
	}
	for _, r := range reqs {
		if r.Status != http.StatusOK {
			t.Errorf("request at %s to %s: status %d %s", r.Start.Sub(start).Round(time.Millisecond), r.Target, r.Status, r.Err)
		}
	}
	checkRuns(t, s, load, 4*time.Minute)
}

// TestReplicaKilled SIGKILLs one of the two replicas mid-load; the sender
// moves its traffic to the survivor after errors, and the worker reaches
// Herald through the balancer. The replica is started again afterwards.
func TestReplicaKilled(t *testing.T) {
	s := newFaultScenario(t, "replica-kill")
	s.worker()
	a, b := topo.Replicas[0], topo.Replicas[1]
	load := faultload.Start(faultload.Options{Targets: []string{a.URL, b.URL}, Failover: true, EventKey: EventKey, Event: s.event, Prefix: s.name, Interval: 40 * time.Millisecond})
	t.Cleanup(load.Stop)
	start := time.Now()
	time.Sleep(3 * time.Second)
	a.Kill()
	killed := time.Now()
	t.Logf("killed %s at %s", a.Name, killed.Sub(start).Round(time.Millisecond))
	time.Sleep(4 * time.Second)
	load.Stop()
	t.Cleanup(func() {
		if err := topo.StartReplica(a); err != nil {
			t.Errorf("restart %s: %v", a.Name, err)
		}
	})

	reqs := load.Requests()
	toA, toB := 0, 0
	for _, r := range faultload.Between(reqs, start, killed) {
		switch r.Target {
		case a.URL:
			toA++
		case b.URL:
			toB++
		}
	}
	t.Logf("before the kill: %d requests to %s, %d to %s; all by status: %v", toA, a.Name, toB, b.Name, faultload.StatusCounts(reqs))
	if toA == 0 || toB == 0 {
		t.Errorf("the load was not split between the replicas")
	}
	after := faultload.Between(reqs, killed.Add(500*time.Millisecond), time.Now())
	if len(after) == 0 {
		t.Errorf("no request after the kill")
	}
	for _, r := range after {
		if r.Target != b.URL || r.Status != http.StatusOK {
			t.Errorf("request at +%s after the kill to %s: status %d %s", r.Start.Sub(killed).Round(time.Millisecond), r.Target, r.Status, r.Err)
		}
	}
	checkRuns(t, s, load, 3*time.Minute)
}

func readyz(base string) (int, map[string]string) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(base + "/readyz")
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var body struct {
		Checks map[string]string `json:"checks"`
	}
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &body)
	return resp.StatusCode, body.Checks
}

// faultState is one look at the store and, once the store is done, Temporal.
type faultState struct {
	stored     map[string]bool // event id -> dispatched
	runs       map[string][]faultRun
	finished   map[string]int // run id -> herald/function.finished events
	executions map[string][]enumspb.WorkflowExecutionStatus
	listed     bool
}

type faultRun struct{ id, workflowID, status string }

func (st *faultState) storeDone() bool {
	for id, dispatched := range st.stored {
		if rs := st.runs[id]; !dispatched || len(rs) == 0 || rs[0].status != "Completed" {
			return false
		}
	}
	return true
}

func (st *faultState) done() bool {
	if !st.listed || !st.storeDone() {
		return false
	}
	n := 0
	for _, ex := range st.executions {
		for _, s := range ex {
			if s == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
				n++
			}
		}
	}
	return n >= len(st.stored)
}

func lookFault(ctx context.Context, pool *pgxpool.Pool, tc client.Client, s *faultScenario, list bool) (*faultState, error) {
	st := &faultState{stored: map[string]bool{}, runs: map[string][]faultRun{}, finished: map[string]int{},
		executions: map[string][]enumspb.WorkflowExecutionStatus{}}
	rows, err := pool.Query(ctx, `SELECT id, NOT EXISTS (SELECT 1 FROM pending_events p WHERE p.seq = e.seq) FROM events e WHERE name = $1`, s.event)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id string
		var d bool
		if err := rows.Scan(&id, &d); err != nil {
			return nil, err
		}
		st.stored[id] = d
	}
	rows, err = pool.Query(ctx, `SELECT id, event_id, workflow_id, status FROM runs WHERE app_id = $1 AND function_id = $2 ORDER BY started_at`, s.app, faultFunction)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var r faultRun
		var ev string
		if err := rows.Scan(&r.id, &ev, &r.workflowID, &r.status); err != nil {
			return nil, err
		}
		st.runs[ev] = append(st.runs[ev], r)
	}
	rows, err = pool.Query(ctx, `SELECT data->>'run_id', count(*) FROM events WHERE name = 'herald/function.finished' AND data->>'function_id' = $1 GROUP BY 1`, s.app+"/"+faultFunction)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var run string
		var n int
		if err := rows.Scan(&run, &n); err != nil {
			return nil, err
		}
		st.finished[run] = n
	}
	if !list && !st.storeDone() {
		return st, nil
	}
	var token []byte
	for {
		resp, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			PageSize: 1000, NextPageToken: token,
			Query: fmt.Sprintf("HeraldApp = '%s' AND HeraldFunction = '%s'", s.app, faultFunction),
		})
		if err != nil {
			return nil, err
		}
		for _, ex := range resp.GetExecutions() {
			st.executions[ex.GetExecution().GetWorkflowId()] = append(st.executions[ex.GetExecution().GetWorkflowId()], ex.GetStatus())
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			break
		}
	}
	st.listed = true
	return st, nil
}

// checkRuns waits until the scenario's runs have finished (at most wait),
// checks the invariants and prints the fault: line.
func checkRuns(t *testing.T, s *faultScenario, load *faultload.Sender, wait time.Duration) {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, topo.HeraldDB)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	tc := temporalClient(t)
	start := time.Now()
	var st *faultState
	lastLog := start
	subproc.WaitFor(wait, time.Second, func() bool {
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		st, err = lookFault(lctx, pool, tc, s, time.Since(start)+time.Second > wait)
		if err != nil {
			t.Logf("look: %v", err)
			return false
		}
		if time.Since(lastLog) > 10*time.Second {
			lastLog = time.Now()
			t.Logf("after %s: %d stored", time.Since(start).Round(time.Second), len(st.stored))
		}
		return st.done()
	})
	if st == nil || !st.listed {
		if st, err = lookFault(ctx, pool, tc, s, true); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("runs finished %s after the load stopped", time.Since(start).Round(100*time.Millisecond))

	sent, acked := load.Ledger()
	problems := map[string][]string{}
	add := func(kind, id string) { problems[kind] = append(problems[kind], id) }
	lost := map[string]bool{}
	runs, dups := 0, 0
	for id := range acked {
		if _, ok := st.stored[id]; !ok {
			lost[id] = true
			add("acknowledged but not stored", id)
		}
	}
	for id := range st.stored {
		if !sent[id] {
			add("stored but never sent", id)
		}
		rs := st.runs[id]
		runs += len(rs)
		switch {
		case len(rs) == 0:
			lost[id] = true
			add("stored without a run", id)
		case len(rs) > 1:
			dups += len(rs) - 1
			add("more than one run", id)
		}
		if len(rs) > 0 {
			r := rs[0]
			if r.status != "Completed" {
				lost[id] = true
				add("run not Completed ("+r.status+")", id)
			}
			if r.workflowID != wire.WorkflowID(s.app, faultFunction, id) {
				add("run with the wrong workflow id", id)
			}
			switch n := st.finished[r.id]; {
			case n == 0 && r.status == "Completed":
				add("Completed run without its herald/function.finished event", id)
			case n > 1:
				dups += n - 1
				add("herald/function.finished stored more than once", id)
			}
		}
		ex := st.executions[wire.WorkflowID(s.app, faultFunction, id)]
		switch {
		case len(ex) == 0:
			lost[id] = true
			add("stored without a workflow execution", id)
		case len(ex) > 1:
			dups += len(ex) - 1
			add("more than one workflow execution", id)
		case ex[0] != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
			lost[id] = true
			add("workflow not completed ("+ex[0].String()+")", id)
		}
	}
	line := fmt.Sprintf("fault: prod-%s sent=%d acked=%d stored=%d runs=%d duplicates=%d lost=%d",
		s.name, len(sent), len(acked), len(st.stored), runs, dups, len(lost))
	t.Log(line)
	fmt.Fprintln(os.Stdout, line)
	kinds := make([]string, 0, len(problems))
	for k := range problems {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		ids := problems[k]
		sort.Strings(ids)
		t.Errorf("%s: %d, e.g. %v", k, len(ids), ids[:min(len(ids), 10)])
	}
	if len(acked) == 0 {
		t.Errorf("no event was acknowledged: the load did not run")
	}
}
