package fault

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-run/herald/ingest"
	"github.com/herald-run/herald/internal/subproc"
	"github.com/herald-run/herald/internal/testdb"
)

// TestCancellationJobTakenOver runs two herald serve replicas on one
// database, starts a bulk cancellation of a function's active runs on
// replica A and SIGKILLs A in the middle of the job. Replica B must take the
// job over once A's lease is stale, finish it with every run counted once,
// and every run must end Cancelled.
func TestCancellationJobTakenOver(t *testing.T) {
	s := newScenario(t, "job-takeover")
	ts := sharedTemporal(t)
	dbURL := testdb.Schema(t)
	// A short stale threshold keeps the test short; replicas renew every
	// sixth of it and look for stale jobs as often.
	env := []string{"HERALD_JOB_STALE_AFTER=2s"}
	a := s.herald("replica-a", heraldOpts{addr: freeAddr(t), dbURL: dbURL, temporal: ts.hostPort, env: env})
	b := s.herald("replica-b", heraldOpts{addr: freeAddr(t), dbURL: dbURL, temporal: ts.hostPort, env: env})
	sleepers := s.event + ".sleep"
	startSleeperWorker(t, s, b.url, ts.hostPort, sleepers) // it reports to the survivor

	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	runs := pick(200, 1000)
	for sent := 0; sent < runs; sent += 100 {
		events := make([]map[string]any, min(100, runs-sent))
		for i := range events {
			events[i] = map[string]any{"name": sleepers, "id": fmt.Sprintf("sleep-%05d", sent+i), "data": map[string]any{}}
		}
		postJSON(t, b.url+"/e/"+eventKey, "", events, nil)
	}
	start := time.Now()
	if !subproc.WaitFor(pick(90*time.Second, 240*time.Second), 250*time.Millisecond, func() bool {
		return countRuns(t, pool, s.app, "Running") == runs
	}) {
		t.Fatalf("only %d of %d sleeper runs are Running", countRuns(t, pool, s.app, "Running"), runs)
	}
	t.Logf("%d sleeper runs Running after %s", runs, time.Since(start).Round(100*time.Millisecond))

	var created struct {
		Data ingest.CancellationJSON `json:"data"`
	}
	postJSON(t, a.url+"/v1/cancellations", signingKey, map[string]any{"function_id": s.app + "/sleeper"}, &created)
	id := created.Data.ID
	// Kill A once it has cancelled some runs, well before the last.
	threshold := int64(runs / 10)
	var before ingest.CancellationJSON
	if !subproc.WaitFor(30*time.Second, 2*time.Millisecond, func() bool {
		before = getCancellation(t, a.url, id)
		return before.Cancelled >= threshold || before.Status != "Running"
	}) {
		t.Fatalf("the job did not progress on replica A: %+v", before)
	}
	a.Kill()
	killed := time.Now()
	var atKill struct {
		status             string
		matched, cancelled int64
	}
	if err := pool.QueryRow(context.Background(), `SELECT status, matched, cancelled FROM cancellations WHERE id = $1`, id).
		Scan(&atKill.status, &atKill.matched, &atKill.cancelled); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed replica-a with the job %s, %d matched and %d cancelled as saved", atKill.status, atKill.matched, atKill.cancelled)
	if atKill.status != "Running" || atKill.cancelled >= int64(runs) {
		t.Fatalf("replica-a was killed after the job finished (%s, %d of %d cancelled): the kill must land mid-job", atKill.status, atKill.cancelled, runs)
	}

	var job ingest.CancellationJSON
	if !subproc.WaitFor(60*time.Second, 100*time.Millisecond, func() bool {
		job = getCancellation(t, b.url, id)
		return job.Status != "Running"
	}) {
		t.Fatalf("the job is still Running %s after replica-a died: %+v", time.Since(killed).Round(time.Second), job)
	}
	t.Logf("the job %s on replica-b %s after the kill: matched=%d cancelled=%d", job.Status, time.Since(killed).Round(100*time.Millisecond), job.Matched, job.Cancelled)
	if !b.LogContains("taking over a job whose replica stopped renewing its lease") {
		t.Errorf("replica-b's log does not show a takeover")
	}

	cancelledRuns := 0
	subproc.WaitFor(60*time.Second, 250*time.Millisecond, func() bool {
		cancelledRuns = countRuns(t, pool, s.app, "Cancelled")
		return cancelledRuns == runs
	})
	line := fmt.Sprintf("fault: %s runs=%d cancelled-before-kill=%d matched=%d cancelled=%d runs-cancelled=%d",
		s.name, runs, atKill.cancelled, job.Matched, job.Cancelled, cancelledRuns)
	t.Log(line)
	fmt.Println(line)
	if job.Status != "Completed" || job.Matched != int64(runs) || job.Cancelled != int64(runs) {
		t.Errorf("job %s with matched=%d cancelled=%d, want Completed with %d and %d", job.Status, job.Matched, job.Cancelled, runs, runs)
	}
	if cancelledRuns != runs {
		t.Errorf("%d of %d runs ended Cancelled in the store; by status: %v", cancelledRuns, runs, runsByStatus(t, pool, s.app))
	}
}

// startSleeperWorker starts a faultworker that also runs the function
// "sleeper" (triggered by event), whose runs stay active until cancelled.
func startSleeperWorker(t *testing.T, s *scenario, heraldURL, temporal, event string) *proc {
	t.Helper()
	p, err := startProc("worker", filepath.Join(s.dir, "worker.log"), nil, baseEnv(), workerBin,
		"-app", s.app, "-herald-url", heraldURL, "-signing-key", signingKey, "-temporal", temporal,
		"-function", functionID, "-event", s.event, "-sleeper-event", event)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	if !subproc.WaitFor(60*time.Second, 50*time.Millisecond, func() bool { return p.Exited() || p.LogContains("faultworker polling") }) || p.Exited() {
		t.Fatalf("worker did not start:\n%s", tail(p.LogPath, 40))
	}
	return p
}

// postJSON POSTs body to url (with the signing key as bearer, when set),
// requires a 200 and decodes the reply into out (when not nil).
func postJSON(t *testing.T, url, bearer string, body, out any) {
	t.Helper()
	raw, _ := json.Marshal(body)
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s: %s", url, resp.Status, reply)
	}
	if out != nil {
		if err := json.Unmarshal(reply, out); err != nil {
			t.Fatalf("POST %s: %v: %s", url, err, reply)
		}
	}
}

// getCancellation reads a bulk cancellation through a replica's API.
func getCancellation(t *testing.T, baseURL, id string) ingest.CancellationJSON {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, baseURL+"/v1/cancellations/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+signingKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET cancellation %s: %v", id, err)
	}
	defer resp.Body.Close()
	var got struct {
		Data ingest.CancellationJSON `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET cancellation %s: %s: %v", id, resp.Status, err)
	}
	return got.Data
}

// countRuns counts the app's sleeper runs with status.
func countRuns(t *testing.T, pool *pgxpool.Pool, app, status string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM runs WHERE app_id = $1 AND function_id = 'sleeper' AND status = $2`,
		app, status).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func runsByStatus(t *testing.T, pool *pgxpool.Pool, app string) string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT status, count(*) FROM runs WHERE app_id = $1 AND function_id = 'sleeper' GROUP BY 1 ORDER BY 1`, app)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var parts []string
	for rows.Next() {
		var status string
		var n int
		if err := rows.Scan(&status, &n); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, fmt.Sprintf("%s=%d", status, n))
	}
	return strings.Join(parts, " ")
}
