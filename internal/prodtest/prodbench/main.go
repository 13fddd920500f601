// Command prodbench is `make prodbench`: the bench phase on Herald's
// production topology (internal/prodtest): the Temporal server on
// PostgreSQL, two `herald serve` replicas on one database, the example
// worker. It prints `bench: <name> <value> <unit>` lines:
//
//   - event → completed run through Herald (the balancer in front of both
//     replicas) next to the hand-written shim (../shared/tools/e2ebase: an
//     HTTP handler calling ExecuteWorkflow, a worker with the same steps) on
//     the same server, as a ratio;
//   - durable ingest (../shared/tools/loadgen) with both replicas each taking
//     half of the connections, against one replica taking all of them;
//   - per event and per run: rows written in Herald's database, rows written
//     in Temporal's two databases, Temporal history events, and CPU time in
//     the replicas, the Temporal server and PostgreSQL: the inputs of
//     docs/operations.md's capacity model.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"go.temporal.io/sdk/client"

	"github.com/herald-run/herald/internal/benchtool"
	"github.com/herald-run/herald/internal/prodtest"
	"github.com/herald-run/herald/internal/subproc"
	"github.com/herald-run/herald/internal/testdb"
)

func main() {
	var (
		toolsDir = flag.String("tools", "../shared/tools", "directory of the shared load tools (loadgen, e2ebase)")
		n        = flag.Int("n", 600, "events per end-to-end run")
		rounds   = flag.Int("rounds", 2, "end-to-end rounds; each runs the shim and Herald, alternating which goes first")
		dur      = flag.Duration("d", 10*time.Second, "duration of each ingest load")
		keep     = flag.Bool("keep-logs", false, "keep the processes' logs")
	)
	flag.Parse()
	log.SetFlags(0)
	start := time.Now()
	dir, err := os.MkdirTemp("", "herald-prodbench-")
	if err != nil {
		log.Fatal(err)
	}
	if *keep {
		fmt.Fprintln(os.Stderr, "prodbench: logs in", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	bins, loadgen, e2ebase := build(*toolsDir, filepath.Join(dir, "bin"))
	root, _ := filepath.Abs(".")
	topo, err := prodtest.Start(context.Background(), prodtest.Options{
		Bins: bins, Dir: dir, RepoRoot: root, DatabaseURL: testdb.BaseURL(),
		SchemaDir: os.Getenv("HERALD_TEMPORAL_SCHEMA_DIR"), Progress: os.Stderr,
	})
	if err != nil {
		log.Fatalf("prodbench: %v", err)
	}
	defer topo.Stop()
	// Stop cleanly on a fatal error too: log.Fatal skips deferred calls.
	fatal = func(format string, args ...any) {
		topo.Stop()
		log.Fatalf(format, args...)
	}
	ctx := context.Background()
	tc, err := client.Dial(client.Options{HostPort: topo.Temporal, Namespace: prodtest.Namespace})
	if err != nil {
		fatal("prodbench: %v", err)
	}
	defer tc.Close()

	if *rounds < 1 {
		log.Fatalf("prodbench: -rounds must be at least 1, got %d", *rounds)
	}
	benchE2E(ctx, topo, tc, dir, e2ebase, *n, *rounds)
	benchIngest(ctx, topo, loadgen, *dur)
	fmt.Fprintf(os.Stderr, "prodbench: done in %s\n", time.Since(start).Round(time.Second))
}

var fatal = log.Fatalf

func report(name string, v float64, unit string) {
	fmt.Printf("bench: %s %.2f %s\n", name, v, unit)
}

// build builds Herald, the example worker and the shared tools; the
// Temporal server and its SQL tool come from ./bin (make prodtools).
func build(toolsDir, dir string) (prodtest.Binaries, string, string) {
	b := prodtest.Binaries{
		Herald:         filepath.Join(dir, "herald"),
		Demo:           filepath.Join(dir, "herald-demo"),
		TemporalServer: envOr("HERALD_TEMPORAL_SERVER", "bin/temporal-server"),
		SQLTool:        envOr("HERALD_TEMPORAL_SQL_TOOL", "bin/temporal-sql-tool"),
	}
	for _, p := range []string{b.TemporalServer, b.SQLTool} {
		if _, err := os.Stat(p); err != nil {
			log.Fatalf("prodbench: %v: run `make prodbench`, which builds the Temporal server into ./bin", err)
		}
	}
	loadgen, e2ebase := filepath.Join(dir, "loadgen"), filepath.Join(dir, "e2ebase")
	run := func(wd string, args ...string) {
		cmd := exec.Command("go", args...)
		cmd.Dir, cmd.Stdout, cmd.Stderr = wd, os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			log.Fatalf("prodbench: go %s (in %s): %v", strings.Join(args, " "), wd, err)
		}
	}
	fmt.Fprintln(os.Stderr, "prodbench: building herald, the example worker, loadgen and e2ebase...")
	run(".", "build", "-o", b.Herald, "./cmd/herald")
	run(".", "build", "-o", b.Demo, "./examples/demo")
	run(filepath.Join(toolsDir, "loadgen"), "build", "-o", loadgen, ".")
	run(filepath.Join(toolsDir, "e2ebase"), "build", "-o", e2ebase, ".")
	return b, loadgen, e2ebase
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	abs, _ := filepath.Abs(def)
	return abs
}

// benchE2E runs the shim, then Herald, on the same server, and counts what
// each wrote.
func benchE2E(ctx context.Context, topo *prodtest.Topology, tc client.Client, dir, e2ebase string, n, rounds int) {
	dbs := []string{topo.TemporalDB, topo.VisibilityDB}
	heraldDB := dbName(topo.HeraldDB)

	shimAddr := freeAddr()
	shim, err := subproc.Start("e2ebase", filepath.Join(dir, "shim.log"), nil, os.Environ(), e2ebase, "-serve", shimAddr, "-addr", topo.Temporal)
	if err != nil {
		fatal("prodbench: %v", err)
	}
	defer shim.Stop(syscall.SIGTERM, 20*time.Second)
	time.Sleep(time.Second)

	// One side's runs leave Temporal work behind that comes due during the
	// next phase (timer tasks fire and are deleted, closed runs' tasks are
	// cleaned up), so the side measured second pays some of the first one's.
	// The sides alternate over rounds (shim, Herald, Herald, shim, ...) and
	// each figure is the mean over the rounds.
	type side struct {
		rates        []float64
		temporalRows int64
		heraldRows   int64
		cpu          cpuSeconds
	}
	var shimSide, heraldSide side
	for round := range rounds {
		order := []string{"shim", "herald"}
		if round%2 == 1 {
			order = []string{"herald", "shim"}
		}
		for _, name := range order {
			sd, url, wtype := &shimSide, "http://"+shimAddr+"/e/x", "ShimWelcome"
			if name == "herald" {
				sd, url, wtype = &heraldSide, topo.LB.URL+"/e/"+prodtest.EventKey, "welcome-email"
			}
			before := rowsWritten(ctx, topo, dbs)
			beforeHerald := rowsWritten(ctx, topo, []string{heraldDB})
			cpuBefore := cpuNow(topo)
			r := runTool(e2ebase, "-post", url, "-n", strconv.Itoa(n), "-type", wtype, "-addr", topo.Temporal)
			sd.cpu = sd.cpu.plus(cpuNow(topo).minus(cpuBefore))
			sd.temporalRows += rowsWritten(ctx, topo, dbs) - before
			sd.heraldRows += rowsWritten(ctx, topo, []string{heraldDB}) - beforeHerald
			sd.rates = append(sd.rates, r.rate)
		}
	}
	runs := float64(n * rounds)

	shimHistory := historyLength(ctx, tc, "ShimWelcome")
	heraldHistory := historyLength(ctx, tc, "welcome-email")
	shimRate, heraldRate := benchtool.Mean(shimSide.rates), benchtool.Mean(heraldSide.rates)
	report("prod_e2e_shim", shimRate, fmt.Sprintf("runs/s (mean of %d rounds: %s)", rounds, benchtool.RateList(shimSide.rates)))
	report("prod_e2e_herald", heraldRate, fmt.Sprintf("runs/s (two replicas behind the balancer; mean of %d rounds: %s)", rounds, benchtool.RateList(heraldSide.rates)))
	report("prod_e2e_herald_vs_shim", heraldRate/shimRate, "ratio of the means (target >= 0.95)")
	report("prod_history_events_shim", float64(shimHistory), "events per run")
	report("prod_history_events_herald", float64(heraldHistory), "events per run")
	report("prod_history_events_herald_minus_shim", float64(heraldHistory-shimHistory), "events (target <= 2)")
	report("prod_herald_db_rows_per_run", float64(heraldSide.heraldRows)/runs, "rows inserted+updated+deleted in Herald's database per event and its run")
	report("prod_temporal_db_rows_per_run_shim", float64(shimSide.temporalRows)/runs, "rows written in Temporal's databases per run")
	report("prod_temporal_db_rows_per_run_herald", float64(heraldSide.temporalRows)/runs, "rows written in Temporal's databases per run")
	report("prod_cpu_ms_per_run_herald", 1000*heraldSide.cpu.herald/runs, "ms of CPU in the two herald serve replicas per event and its run")
	report("prod_cpu_ms_per_run_temporal_shim", 1000*shimSide.cpu.temporal/runs, "ms of CPU in the Temporal server per run of the shim")
	report("prod_cpu_ms_per_run_temporal", 1000*heraldSide.cpu.temporal/runs, "ms of CPU in the Temporal server per run")
	report("prod_cpu_ms_per_run_postgres_shim", 1000*shimSide.cpu.postgres/runs, "ms of CPU in PostgreSQL per run of the shim (upper bound: a shared server)")
	report("prod_cpu_ms_per_run_postgres", 1000*heraldSide.cpu.postgres/runs, "ms of CPU in PostgreSQL per run (Herald's and Temporal's databases; upper bound: a shared server)")
}

// benchIngest measures durable ingest: one replica taking all connections,
// then both replicas taking half each, at the same time, with the same
// client.
func benchIngest(ctx context.Context, topo *prodtest.Topology, loadgen string, d time.Duration) {
	a, b := topo.Replicas[0], topo.Replicas[1]
	heraldDB := []string{dbName(topo.HeraldDB)}
	for _, shape := range []struct {
		label        string
		conns, batch int
	}{{"single", 64, 1}, {"batch100", 8, 100}} {
		args := func(url string, conns int) []string {
			return []string{"-url", url + "/e/" + prodtest.EventKey, "-c", strconv.Itoa(conns), "-batch", strconv.Itoa(shape.batch), "-d", d.String(),
				"-name", "load/prodbench", "-prefix", fmt.Sprintf("pb-%s-%d", shape.label, time.Now().UnixNano())}
		}
		// Each load starts on an empty outbox: the router's backlog from
		// the previous load would compete with it for the machine.
		waitDispatched(ctx, topo)
		one := runTool(loadgen, args(a.URL, shape.conns)...)
		waitDispatched(ctx, topo)
		rowsBefore := rowsWritten(ctx, topo, heraldDB)
		cpuBefore := cpuNow(topo)
		var wg sync.WaitGroup
		var ra, rb toolResult
		wg.Add(2)
		go func() { defer wg.Done(); ra = runTool(loadgen, args(a.URL, shape.conns/2)...) }()
		go func() { defer wg.Done(); rb = runTool(loadgen, args(b.URL, shape.conns/2)...) }()
		wg.Wait()
		both := ra.rate + rb.rate
		waitDispatched(ctx, topo)
		cpu := cpuNow(topo).minus(cpuBefore)
		rows := rowsWritten(ctx, topo, heraldDB) - rowsBefore
		report("prod_ingest_"+shape.label+"_one_replica", one.rate, fmt.Sprintf("events/s (-c %d -batch %d to one replica)", shape.conns, shape.batch))
		report("prod_ingest_"+shape.label+"_two_replicas", both, fmt.Sprintf("events/s (-c %d -batch %d to each of two replicas at once)", shape.conns/2, shape.batch))
		report("prod_ingest_"+shape.label+"_two_vs_one", both/one.rate, "ratio")
		report("prod_ingest_"+shape.label+"_two_replicas_p99", max(ra.p99, rb.p99), "ms")
		// Events no function matches: the outbox row, its dispatch.
		if n := float64(both) * d.Seconds(); n > 0 {
			report("prod_ingest_"+shape.label+"_db_rows_per_event", float64(rows)/n, "rows written in Herald's database per event (no function matches)")
			report("prod_ingest_"+shape.label+"_cpu_us_per_event_herald", 1e6*cpu.herald/n, "µs of CPU in herald serve per event, ingest and dispatch")
			report("prod_ingest_"+shape.label+"_cpu_us_per_event_postgres", 1e6*cpu.postgres/n, "µs of CPU in PostgreSQL per event (upper bound: a shared server)")
		}
	}
}

// rowsWritten sums inserted, updated and deleted rows over the user tables
// of the databases, from PostgreSQL's statistics (flushed by each backend
// within a second; the caller's phases are longer, and it waits 2 s).
func rowsWritten(ctx context.Context, topo *prodtest.Topology, dbs []string) int64 {
	time.Sleep(2 * time.Second)
	var total int64
	for _, db := range dbs {
		conn, err := pgx.Connect(ctx, topo.DBURL(db))
		if err != nil {
			fatal("prodbench: %v", err)
		}
		var n int64
		// A fresh snapshot of the statistics, not the transaction's cache.
		_, _ = conn.Exec(ctx, "SELECT pg_stat_clear_snapshot()")
		if err := conn.QueryRow(ctx, `SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint FROM pg_stat_user_tables`).Scan(&n); err != nil {
			fatal("prodbench: %v", err)
		}
		_ = conn.Close(ctx)
		total += n
	}
	return total
}

// waitDispatched waits until the router has dispatched every event, so the
// rows counted include the dispatch of the last ones.
func waitDispatched(ctx context.Context, topo *prodtest.Topology) {
	conn, err := pgx.Connect(ctx, topo.HeraldDB)
	if err != nil {
		fatal("prodbench: %v", err)
	}
	defer conn.Close(ctx)
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pending_events`).Scan(&n); err != nil {
			fatal("prodbench: %v", err)
		}
		if n == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	fatal("prodbench: events still undispatched after 2 minutes")
}

// cpuSeconds is the CPU time (user and system) each component has used so
// far: the Herald replicas, the Temporal server, and every process named
// postgres on the machine (the shared server: other clients' work counts
// too, so the figure is an upper bound).
type cpuSeconds struct{ herald, temporal, postgres float64 }

func cpuNow(topo *prodtest.Topology) cpuSeconds {
	var c cpuSeconds
	for _, r := range topo.Replicas {
		c.herald += benchtool.ProcessCPU(r.Pid()).Seconds()
	}
	c.temporal = benchtool.ProcessCPU(topo.TemporalProc().Pid()).Seconds()
	c.postgres = benchtool.CommandCPU("postgres").Seconds()
	return c
}

func (c cpuSeconds) minus(o cpuSeconds) cpuSeconds {
	return cpuSeconds{c.herald - o.herald, c.temporal - o.temporal, c.postgres - o.postgres}
}

func (c cpuSeconds) plus(o cpuSeconds) cpuSeconds {
	return cpuSeconds{c.herald + o.herald, c.temporal + o.temporal, c.postgres + o.postgres}
}

func dbName(url string) string {
	u := url[strings.LastIndex(url, "/")+1:]
	if i := strings.Index(u, "?"); i >= 0 {
		u = u[:i]
	}
	return u
}

func historyLength(ctx context.Context, c client.Client, workflowType string) int64 {
	n, err := benchtool.HistoryLength(ctx, c, workflowType)
	if err != nil {
		fatal("prodbench: %v", err)
	}
	return n
}

type toolResult struct {
	rate, p50, p99 float64
	line           string
}

var latencyRE = regexp.MustCompile(`p50 ([0-9.]+)ms p99 ([0-9.]+)ms`)

// runTool runs a load tool at the lowest CPU priority and parses its RESULT.
func runTool(bin string, args ...string) toolResult {
	cmd := exec.Command("nice", append([]string{"-n", "19", bin}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		fatal("prodbench: %s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	var r toolResult
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "RESULT "); ok {
			r.rate, _ = strconv.ParseFloat(strings.TrimSpace(rest), 64)
			continue
		}
		r.line = line
		if m := latencyRE.FindStringSubmatch(line); m != nil {
			r.p50, _ = strconv.ParseFloat(m[1], 64)
			r.p99, _ = strconv.ParseFloat(m[2], 64)
		}
	}
	if r.rate == 0 {
		fatal("prodbench: %s printed no RESULT:\n%s", filepath.Base(bin), out)
	}
	fmt.Fprintf(os.Stderr, "prodbench:   %s %s: %s\n", filepath.Base(bin), strings.Join(args, " "), r.line)
	return r
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatal("prodbench: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
