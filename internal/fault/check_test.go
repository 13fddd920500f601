package fault

import (
	"context"
	"fmt"
	"sort"
	"strings"
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

// functionID is the function every scenario's worker runs.
const functionID = "deliver"

// outcome is what a scenario reports.
type outcome struct {
	sent, acked, stored, runs, duplicates, lost int
}

// checkOpts says where a scenario's events and runs are.
type checkOpts struct {
	scenario string
	dbURL    string
	temporal client.Client
	app      string
	event    string
	load     *faultload.Sender
	// wait bounds how long the runs may take to finish after the load.
	wait time.Duration
}

// state is one look at the store and, once the store says every run
// completed, at Temporal.
type state struct {
	stored     map[string]bool     // event id -> dispatched
	runs       map[string][]runRow // event id -> its runs of the function
	finished   map[string]int      // run id -> herald/function.finished events
	executions map[string][]enumspb.WorkflowExecutionStatus
	listed     bool // executions were listed
	err        error
}

type runRow struct {
	id, workflowID, status string
	output                 bool
}

// storeComplete reports whether every stored event was dispatched and its
// run completed.
func (s *state) storeComplete() bool {
	if s.err != nil {
		return false
	}
	for id, dispatched := range s.stored {
		if !dispatched || len(s.runs[id]) == 0 || s.runs[id][0].status != "Completed" {
			return false
		}
	}
	return true
}

// complete reports whether, in addition, Temporal lists a completed
// execution for every stored event.
func (s *state) complete() bool {
	return s.storeComplete() && s.listed && s.completedExecutions() >= len(s.stored)
}

func (s *state) completedExecutions() int {
	n := 0
	for _, ex := range s.executions {
		for _, st := range ex {
			if st == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
				n++
			}
		}
	}
	return n
}

// progress says how far the runs are, for the log of a slow drain.
func (s *state) progress() string {
	dispatched, completed := 0, 0
	for id, d := range s.stored {
		if d {
			dispatched++
		}
		if rs := s.runs[id]; len(rs) > 0 && rs[0].status == "Completed" {
			completed++
		}
	}
	return fmt.Sprintf("stored %d, dispatched %d, runs Completed %d", len(s.stored), dispatched, completed)
}

// check waits until the scenario's runs have finished (or o.wait passed),
// then checks the invariants, prints the summary line and returns it.
func check(t *testing.T, o checkOpts) outcome {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), o.dbURL)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	defer pool.Close()
	start := time.Now()
	deadline := start.Add(o.wait)
	var st *state
	lastLog := start
	subproc.WaitFor(o.wait, time.Second, func() bool {
		// Listing thousands of executions costs the server: only once the
		// store is done, or at the deadline.
		st = look(pool, o, time.Now().Add(time.Second).After(deadline))
		if time.Since(lastLog) >= 5*time.Second {
			lastLog = time.Now()
			t.Logf("after %s: %s", time.Since(start).Round(time.Second), st.progress())
		}
		return st.complete()
	})
	if st.err != nil {
		t.Fatalf("check: %v", st.err)
	}
	if !st.listed {
		st = look(pool, o, true)
		if st.err != nil {
			t.Fatalf("check: %v", st.err)
		}
	}
	t.Logf("runs finished %s after the load stopped", time.Since(start).Round(100*time.Millisecond))

	sent, acked := o.load.Ledger()
	fnKey := o.app + "/" + functionID
	var out outcome
	out.sent, out.acked, out.stored = len(sent), len(acked), len(st.stored)
	problems := map[string][]string{}
	add := func(kind, id string) { problems[kind] = append(problems[kind], id) }

	lost := map[string]bool{}
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
		runs := st.runs[id]
		out.runs += len(runs)
		switch {
		case len(runs) == 0:
			lost[id] = true
			add("stored without a run", id)
		case len(runs) > 1:
			out.duplicates += len(runs) - 1
			add("more than one run", id)
		}
		if len(runs) > 0 {
			r := runs[0]
			if r.status != "Completed" {
				lost[id] = true
				add("run not Completed ("+r.status+")", id)
			} else if !r.output {
				add("Completed run without output", id)
			}
			if want := wire.WorkflowID(o.app, functionID, id); r.workflowID != want {
				add("run with the wrong workflow id", id)
			}
			switch n := st.finished[r.id]; {
			case n == 0 && r.status == "Completed":
				add("Completed run without its herald/function.finished event", id)
			case n > 1:
				out.duplicates += n - 1
				add("herald/function.finished stored more than once", id)
			}
		}
		ex := st.executions[wire.WorkflowID(o.app, functionID, id)]
		switch {
		case len(ex) == 0:
			lost[id] = true
			add("stored without a workflow execution", id)
		case len(ex) > 1:
			out.duplicates += len(ex) - 1
			add("more than one workflow execution", id)
		case ex[0] != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
			lost[id] = true
			add("workflow not completed ("+ex[0].String()+")", id)
		}
	}
	for id := range st.runs {
		if _, ok := st.stored[id]; !ok {
			add("run for an event that is not stored", id)
		}
	}
	for wf := range st.executions {
		id := strings.TrimPrefix(wf, fnKey+"/")
		if _, ok := st.stored[id]; !ok {
			add("workflow execution for an event that is not stored", wf)
		}
	}
	out.lost = len(lost)

	line := fmt.Sprintf("fault: %s sent=%d acked=%d stored=%d runs=%d duplicates=%d lost=%d",
		o.scenario, out.sent, out.acked, out.stored, out.runs, out.duplicates, out.lost)
	t.Log(line)
	fmt.Println(line)

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
	// What Temporal says about a few of the lost events' workflows.
	lostIDs := make([]string, 0, len(lost))
	for id := range lost {
		lostIDs = append(lostIDs, id)
	}
	sort.Strings(lostIDs)
	for _, id := range lostIDs[:min(len(lostIDs), 3)] {
		t.Logf("event %s: %s", id, explain(o.temporal, wire.WorkflowID(o.app, functionID, id)))
	}
	if out.acked == 0 {
		t.Errorf("no event was acknowledged: the load did not run")
	}
	return out
}

// look reads the scenario's events and runs from the store and, when the
// store is done or list is set, its workflow executions from Temporal.
func look(pool *pgxpool.Pool, o checkOpts, list bool) *state {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st := &state{stored: map[string]bool{}, runs: map[string][]runRow{}, finished: map[string]int{},
		executions: map[string][]enumspb.WorkflowExecutionStatus{}}
	rows, err := pool.Query(ctx, `SELECT id, NOT EXISTS (SELECT 1 FROM pending_events p WHERE p.seq = e.seq) FROM events e WHERE name = $1`, o.event)
	if err != nil {
		st.err = fmt.Errorf("read events: %w", err)
		return st
	}
	for rows.Next() {
		var id string
		var dispatched bool
		if err := rows.Scan(&id, &dispatched); err != nil {
			st.err = err
			return st
		}
		st.stored[id] = dispatched
	}
	if st.err = rows.Err(); st.err != nil {
		return st
	}
	rows, err = pool.Query(ctx, `SELECT id, event_id, workflow_id, status, output IS NOT NULL FROM runs
		WHERE app_id = $1 AND function_id = $2 ORDER BY started_at`, o.app, functionID)
	if err != nil {
		st.err = fmt.Errorf("read runs: %w", err)
		return st
	}
	for rows.Next() {
		var r runRow
		var event string
		if err := rows.Scan(&r.id, &event, &r.workflowID, &r.status, &r.output); err != nil {
			st.err = err
			return st
		}
		st.runs[event] = append(st.runs[event], r)
	}
	if st.err = rows.Err(); st.err != nil {
		return st
	}
	rows, err = pool.Query(ctx, `SELECT data->>'run_id', count(*) FROM events
		WHERE name = 'herald/function.finished' AND data->>'function_id' = $1 GROUP BY 1`, o.app+"/"+functionID)
	if err != nil {
		st.err = fmt.Errorf("read system events: %w", err)
		return st
	}
	for rows.Next() {
		var run string
		var n int
		if err := rows.Scan(&run, &n); err != nil {
			st.err = err
			return st
		}
		st.finished[run] = n
	}
	if st.err = rows.Err(); st.err != nil {
		return st
	}
	if !list && !st.storeComplete() {
		return st
	}
	// Every execution of the function, closed ones included: a second
	// execution of one workflow id would be a second run.
	var token []byte
	for {
		resp, err := o.temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: "default", PageSize: 1000, NextPageToken: token,
			Query: fmt.Sprintf("HeraldApp = '%s' AND HeraldFunction = '%s'", o.app, functionID),
		})
		if err != nil {
			st.err = fmt.Errorf("list workflows: %w", err)
			return st
		}
		for _, ex := range resp.GetExecutions() {
			id := ex.GetExecution().GetWorkflowId()
			st.executions[id] = append(st.executions[id], ex.GetStatus())
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			break
		}
	}
	st.listed = true
	return st
}

// explain describes a workflow for a failure message: its status and what
// its pending activities are waiting for.
func explain(tc client.Client, workflowID string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := tc.DescribeWorkflowExecution(ctx, workflowID, "")
	if err != nil {
		return "describe: " + err.Error()
	}
	info := d.GetWorkflowExecutionInfo()
	var b strings.Builder
	fmt.Fprintf(&b, "workflow %s, history length %d", info.GetStatus(), info.GetHistoryLength())
	for _, a := range d.GetPendingActivities() {
		fmt.Fprintf(&b, "; pending activity %s: %s, attempt %d, last failure %q", a.GetActivityType().GetName(), a.GetState(), a.GetAttempt(), a.GetLastFailure().GetMessage())
	}
	if wt := d.GetPendingWorkflowTask(); wt != nil {
		fmt.Fprintf(&b, "; pending workflow task %s, attempt %d", wt.GetState(), wt.GetAttempt())
	}
	return b.String()
}

// pending returns how many of the scenario's stored events the router has
// not dispatched yet, for the log: a kill with events pending shows the
// restart had dispatch work to take over.
func pending(t *testing.T, dbURL, event string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatalf("pending: %v", err)
	}
	defer pool.Close()
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM events e JOIN pending_events p USING (seq) WHERE e.name = $1`, event).Scan(&n); err != nil {
		t.Fatalf("pending: %v", err)
	}
	return n
}
