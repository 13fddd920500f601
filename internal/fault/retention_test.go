package fault

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-run/herald/internal/faultload"
	"github.com/herald-run/herald/internal/subproc"
	"github.com/herald-run/herald/internal/testdb"
)

// TestRetentionUnderLoad runs herald serve with the default retention (30
// days) and a short housekeeping interval under a steady load, and puts rows
// 60 days old straight into its database while the load runs: events, their
// finished runs with batch links, finished bulk cancellations. Herald must
// purge them while the load runs, keep every row younger than the retention
// and every old event a running run still references, and lose nothing it
// acknowledged. It also compares ingest while a large purge runs with ingest
// while none does (logged, not asserted).
func TestRetentionUnderLoad(t *testing.T) {
	s := newScenario(t, "retention")
	ts := sharedTemporal(t)
	tc := ts.client(t)
	dbURL := testdb.Schema(t)
	h := s.herald("herald", heraldOpts{addr: freeAddr(t), dbURL: dbURL, temporal: ts.hostPort,
		env: []string{"HERALD_HOUSEKEEPING_INTERVAL=500ms"}})
	s.worker("worker", h.url, ts.hostPort, quickSteps)
	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	db := &retentionDB{t: t, pool: pool, app: s.app}

	var (
		backlog = pick(30000, 100000) // old events (and as many runs) put in at once
		more    = pick(3000, 10000)   // more, later in the load
		minLoad = pick(8*time.Second, 30*time.Second)
	)
	// A load the worker and Temporal keep up with on 2 cores, so that what
	// the probe measures is ingest, not a machine drowning in runs.
	load := s.sendLoad([]string{h.url}, false, 40*time.Millisecond)
	start := time.Now()

	// What the retention keeps: rows a day younger than it, and old events
	// whose run is still running.
	db.exec(`INSERT INTO events (id, name, data, ts, received_at, dispatched_at)
		SELECT 'young-' || g, 'fault/retention-old', '{}', 0, now() - interval '29 days', now() - interval '29 days'
		  FROM generate_series(1, 100) g`)
	db.exec(`INSERT INTO runs (id, app_id, function_id, event_id, workflow_id, status, started_at, ended_at)
		SELECT 'young-r' || g, $1, 'old-fn', 'young-' || g, 'young-wf-' || g, 'Completed', now() - interval '29 days', now() - interval '29 days'
		  FROM generate_series(1, 100) g`, s.app)
	db.exec(`INSERT INTO cancellations (id, app_id, function_id, status, created_at, updated_at, heartbeat_at)
		SELECT 'young-c' || g, $1, 'old-fn', 'Completed', now() - interval '29 days', now() - interval '29 days', now() - interval '29 days'
		  FROM generate_series(1, 5) g`, s.app)
	db.exec(`INSERT INTO events (id, name, data, ts, received_at, dispatched_at)
		SELECT 'keep-' || g, 'fault/retention-old', '{}', 0, now() - interval '60 days', now() - interval '60 days'
		  FROM generate_series(1, 10) g`)
	db.exec(`INSERT INTO runs (id, app_id, function_id, event_id, workflow_id, status, started_at)
		SELECT 'keep-r' || g, $1, 'old-fn', 'keep-' || g, 'keep-wf-' || g, 'Running', now() - interval '60 days'
		  FROM generate_series(1, 10) g`, s.app)
	kept := db.counts("young-", "keep-")

	// Ingest with nothing to purge.
	probe := &ingestProbe{url: h.url, name: "fault/retention-probe"}
	time.Sleep(time.Second) // a round or two pass: the kept rows stay
	idle := probe.run(t, 100, nil)

	// A backlog of old rows, purged while the load and the probe run.
	db.insertOld("old1-", backlog)
	backlogAt := time.Now()
	busy := probe.run(t, 300, func() bool { return db.oldLeft("old1-") > 0 })
	if !subproc.WaitFor(pick(60*time.Second, 180*time.Second), 100*time.Millisecond, func() bool { return db.oldLeft("old1-") == 0 }) {
		t.Fatalf("%d old rows left %s after they were put in", db.oldLeft("old1-"), time.Since(backlogAt).Round(time.Second))
	}
	backlogPurged := time.Now()
	t.Logf("purged %d old events, %d runs, %d batch links and %d cancellations in %s while the load ran",
		backlog, backlog, backlog/10, 50, backlogPurged.Sub(backlogAt).Round(100*time.Millisecond))
	// Ingest again with nothing to purge, as long as while purging: the
	// router has as many probe events to dispatch as then.
	after := probe.run(t, busy.requests, nil)

	// More old rows, later.
	db.insertOld("old2-", more)
	moreAt := time.Now()
	if !subproc.WaitFor(60*time.Second, 100*time.Millisecond, func() bool { return db.oldLeft("old2-") == 0 }) {
		t.Fatalf("%d old rows left %s after they were put in", db.oldLeft("old2-"), time.Since(moreAt).Round(time.Second))
	}
	t.Logf("purged %d more old events and runs in %s", more, time.Since(moreAt).Round(100*time.Millisecond))
	sleepUntil(start.Add(minLoad))
	load.Stop()
	loadStopped := time.Now()

	if got := db.counts("young-", "keep-"); got != kept || kept != (retentionCounts{events: 110, runs: 110, cancellations: 5}) {
		t.Errorf("rows the retention keeps: %+v before, %+v after", kept, got)
	}
	purged := purgedRows(t, h.url)
	t.Logf("herald_purged_rows_total: %v", purged)
	if want := float64(backlog + more); purged["events"] < want || purged["runs"] < want || purged["cancellations"] < 100 {
		t.Errorf("herald_purged_rows_total does not count the purge: %v, want at least %v events and runs", purged, want)
	}
	if lost := db.missing(probe.acked); len(lost) > 0 {
		t.Errorf("%d acknowledged probe events are not stored, e.g. %v", len(lost), lost[:min(len(lost), 5)])
	}

	reqs := load.Requests()
	t.Logf("ingest, %d-event requests back to back: before the backlog %s; while purging it %s; after %s",
		probeBatch, idle, busy, after)
	t.Logf("ingest, the steady load's requests: without purging %s; while purging %s",
		latencies(faultload.Between(reqs, start, backlogAt)), latencies(faultload.Between(reqs, backlogAt, backlogPurged)))
	t.Logf("load ran %s; every old row was purged %s before it stopped", loadStopped.Sub(start).Round(100*time.Millisecond),
		loadStopped.Sub(backlogPurged).Round(100*time.Millisecond))
	check(t, checkOpts{scenario: s.name, dbURL: dbURL, temporal: tc, app: s.app, event: s.event, load: load, wait: pick(90*time.Second, 300*time.Second)})
}

// retentionDB reads and writes the scenario's database directly.
type retentionDB struct {
	t    *testing.T
	pool *pgxpool.Pool
	app  string
}

func (d *retentionDB) exec(sql string, args ...any) {
	d.t.Helper()
	if _, err := d.pool.Exec(context.Background(), sql, args...); err != nil {
		d.t.Fatalf("%v\n%s", err, sql)
	}
}

// insertOld puts in, in one transaction, n events received and dispatched
// 60 days ago, a run of each that ended then (one in ten linked to its event
// as a batch run is), and 50 bulk cancellations that finished then; every id
// starts with prefix.
func (d *retentionDB) insertOld(prefix string, n int) {
	d.t.Helper()
	d.exec(`WITH e AS (
		  INSERT INTO events (id, name, data, ts, received_at, dispatched_at)
		  SELECT $1 || g, 'fault/retention-old', '{"old":true}', 0, now() - interval '60 days' + g * interval '1 ms', now() - interval '60 days'
		    FROM generate_series(1, $2::int) g),
		r AS (
		  INSERT INTO runs (id, app_id, function_id, event_id, workflow_id, status, started_at, ended_at)
		  SELECT $1 || 'r' || g, $3, 'old-fn', $1 || g, $1 || 'wf-' || g, 'Completed', now() - interval '60 days', now() - interval '60 days' + g * interval '1 ms'
		    FROM generate_series(1, $2::int) g),
		l AS (
		  INSERT INTO run_events (event_id, run_id) SELECT $1 || g, $1 || 'r' || g FROM generate_series(1, $2::int, 10) g)
		INSERT INTO cancellations (id, app_id, function_id, status, created_at, updated_at, heartbeat_at)
		SELECT $1 || 'c' || g, $3, 'old-fn', 'Completed', now() - interval '60 days', now() - interval '60 days', now() - interval '60 days'
		  FROM generate_series(1, 50) g`, prefix, n, d.app)
}

// oldLeft counts the rows with prefix still stored, in every table.
func (d *retentionDB) oldLeft(prefix string) int {
	d.t.Helper()
	var n int
	err := d.pool.QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM events WHERE name = 'fault/retention-old' AND id LIKE $1 || '%') +
		(SELECT count(*) FROM runs WHERE app_id = $2 AND function_id = 'old-fn' AND id LIKE $1 || '%') +
		(SELECT count(*) FROM run_events WHERE run_id LIKE $1 || '%') +
		(SELECT count(*) FROM cancellations WHERE id LIKE $1 || '%')`, prefix, d.app).Scan(&n)
	if err != nil {
		d.t.Fatal(err)
	}
	return n
}

type retentionCounts struct{ events, runs, cancellations int }

// counts counts the events, runs and cancellations whose ids start with one
// of prefixes.
func (d *retentionDB) counts(prefixes ...string) retentionCounts {
	d.t.Helper()
	var c retentionCounts
	for _, p := range prefixes {
		var e, r, k int
		err := d.pool.QueryRow(context.Background(), `SELECT
			(SELECT count(*) FROM events WHERE id LIKE $1 || '%'),
			(SELECT count(*) FROM runs WHERE id LIKE $1 || '%'),
			(SELECT count(*) FROM cancellations WHERE id LIKE $1 || '%')`, p).Scan(&e, &r, &k)
		if err != nil {
			d.t.Fatal(err)
		}
		c.events, c.runs, c.cancellations = c.events+e, c.runs+r, c.cancellations+k
	}
	return c
}

// missing returns the ids that are not stored.
func (d *retentionDB) missing(ids []string) []string {
	d.t.Helper()
	rows, err := d.pool.Query(context.Background(), `SELECT id FROM events WHERE id = ANY($1)`, ids)
	if err != nil {
		d.t.Fatal(err)
	}
	defer rows.Close()
	stored := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			d.t.Fatal(err)
		}
		stored[id] = true
	}
	var out []string
	for _, id := range ids {
		if !stored[id] {
			out = append(out, id)
		}
	}
	return out
}

// probeBatch is the number of events in each probe request.
const probeBatch = 100

// ingestProbe measures ingest from outside: requests of probeBatch events
// (a name no function listens to, so they cost Temporal nothing), one after
// the other.
type ingestProbe struct {
	url, name string
	seq       int
	acked     []string
}

// probeResult is one measurement.
type probeResult struct {
	requests, failed int
	elapsed          time.Duration
	latencies        []time.Duration
}

func (r probeResult) String() string {
	if r.requests == 0 {
		return "no requests"
	}
	slices.Sort(r.latencies)
	rate := float64((r.requests-r.failed)*probeBatch) / r.elapsed.Seconds()
	return fmt.Sprintf("%.0f events/s over %d requests (%d failed), latency p50 %s p99 %s", rate, r.requests, r.failed,
		percentile(r.latencies, 50), percentile(r.latencies, 99))
}

// run sends up to max requests, while more (when set) reports true; more is
// asked every ten requests.
func (p *ingestProbe) run(t *testing.T, max int, more func() bool) probeResult {
	t.Helper()
	var res probeResult
	start := time.Now()
	for i := 0; i < max; i++ {
		if more != nil && i%10 == 0 && !more() {
			break
		}
		events := make([]map[string]any, probeBatch)
		ids := make([]string, probeBatch)
		for j := range events {
			p.seq++
			ids[j] = fmt.Sprintf("probe-%06d", p.seq)
			events[j] = map[string]any{"name": p.name, "id": ids[j], "data": map[string]any{"j": j}}
		}
		body, _ := json.Marshal(events)
		sent := time.Now()
		resp, err := http.Post(p.url+"/e/"+eventKey, "application/json", bytes.NewReader(body))
		res.requests++
		if err != nil {
			res.failed++
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		res.latencies = append(res.latencies, time.Since(sent))
		if resp.StatusCode != http.StatusOK {
			res.failed++
			continue
		}
		p.acked = append(p.acked, ids...)
	}
	res.elapsed = time.Since(start)
	return res
}

func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, len(sorted)*p/100)].Round(100 * time.Microsecond)
}

// latencies summarizes the latency of the acknowledged requests among reqs.
func latencies(reqs []faultload.Request) string {
	var ls []time.Duration
	for _, r := range reqs {
		if r.Status == http.StatusOK {
			ls = append(ls, r.Latency)
		}
	}
	slices.Sort(ls)
	return fmt.Sprintf("%d requests, latency p50 %s p99 %s", len(ls), percentile(ls, 50), percentile(ls, 99))
}

// purgedRows reads herald_purged_rows_total from /metrics, by table.
func purgedRows(t *testing.T, baseURL string) map[string]float64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, baseURL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+signingKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, `herald_purged_rows_total{table="`)
		if !ok {
			continue
		}
		table, value, _ := strings.Cut(rest, `"} `)
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[table] = v
	}
	return out
}
