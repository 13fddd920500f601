// Command bench measures Herald's whole-system numbers on this machine, in one
// run against the local PostgreSQL, and prints one line per figure:
//
//	bench: <name> <value> <unit>
//
// It is run by `make bench`. Figures depend on the machine; the ratios are
// what the design targets (see DESIGN.md).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"
	"github.com/oklog/ulid/v2"

	"github.com/herald-run/herald/ingest"
	"github.com/herald-run/herald/internal/testdb"
	"github.com/herald-run/herald/store/postgres"
)

func main() {
	var (
		dbURL       = flag.String("database-url", testdb.BaseURL(), "PostgreSQL to measure against [$HERALD_TEST_DATABASE_URL]")
		duration    = flag.Duration("duration", 5*time.Second, "how long each load phase runs, after a 1s warm-up")
		conns       = flag.Int("conns", 64, "concurrent keep-alive connections of the load client")
		only        = flag.String("only", "", "comma-separated phases to run (serve,e2e: the serving processes; ceiling,single,copy,batch,dispatch,resume,flow: components); default all")
		starts      = flag.Int("starts", 10000, "workflow starts in the dispatch phase (raw and through Herald)")
		flushers    = flag.Int("flushers", 0, "group-commit flushers (0: Herald's default)")
		showMetrics = flag.Bool("metrics", false, "print the server's group-commit metrics at the end")
		profile     = flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
		toolsDir    = flag.String("tools", "../shared/tools", "directory of the shared load tools (loadgen, e2ebase), for the serve and e2e phases")
		serveDur    = flag.Duration("serve-duration", 10*time.Second, "how long each load of the serve phase runs")
		backlog     = flag.Duration("backlog", 10*time.Second, "load of 100-event requests sent to the stock PostgreSQL before it is measured (a table in use)")
		targets     = flag.String("serve-targets", "shared,stock,dev", "what the serve phase measures: herald serve on shared (the machine's PostgreSQL) and on stock (a private cluster with stock settings), and herald dev on its SQLite (dev)")
		e2eRuns     = flag.Int("e2e-runs", 600, "events (runs) per side in the e2e phase")
		e2eRounds   = flag.Int("e2e-rounds", 3, "rounds of the e2e phase; each runs both sides, each side on a fresh Temporal dev server, alternating which goes first")
	)
	loadURL := flag.String("load-url", "", "internal: run as the load client against this URL and print the result as JSON")
	loadEvents := flag.Int("load-events", 1, "internal: events per request in load-client mode")
	flag.Parse()
	if *loadURL != "" {
		r := load(*loadURL, eventBody(*loadEvents), *conns, *duration)
		_ = json.NewEncoder(os.Stdout).Encode(r)
		return
	}
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			log.Fatalf("bench: %v", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatalf("bench: %v", err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx := context.Background()
	want := func(phase string) bool { return *only == "" || strings.Contains(","+*only+",", ","+phase+",") }

	// The figures that count: the processes users run, measured from outside.
	if want("serve") || want("e2e") {
		dir, err := os.MkdirTemp("", "herald-bench-")
		if err != nil {
			log.Fatalf("bench: %v", err)
		}
		defer os.RemoveAll(dir)
		o := serveOpts{bins: buildBinaries(*toolsDir, dir), dir: dir, sharedDB: *dbURL, duration: *serveDur, backlog: *backlog,
			targets: strings.Split(*targets, ",")}
		if want("serve") {
			benchServe(ctx, o)
		}
		if want("e2e") {
			benchE2E(ctx, o, *e2eRuns, max(*e2eRounds, 1))
			benchE2EAsMakeDev(ctx, o, *e2eRuns)
		}
	}
	component := false
	for _, p := range []string{"ceiling", "single", "copy", "batch", "dispatch", "resume", "flow"} {
		component = component || want(p)
	}
	if !component {
		return
	}
	// Component figures below: ingest in-process with the router off, and
	// the router's costs; extra lines, not the headline.
	b, err := setup(ctx, *dbURL, *flushers)
	if err != nil {
		log.Fatalf("bench: %v", err)
	}
	defer b.close()

	var ceiling, durable, batched, copyRate float64
	if want("ceiling") {
		r := runLoad(b.url+"/null/bench", 1, *conns, *duration)
		ceiling = r.Rate
		report("http_ceiling_single", r.Rate, "req/s")
		report("http_ceiling_single_p50", ms(r.P50), "ms")
	}
	if want("single") {
		b.truncate(ctx)
		r := runLoad(b.url+"/e/bench", 1, *conns, *duration)
		durable = r.Rate
		report("ingest_single", r.Rate, "events/s")
		report("ingest_single_p50", ms(r.P50), "ms")
		report("ingest_single_p99", ms(r.P99), "ms")
		if ceiling > 0 {
			report("ingest_single_vs_ceiling", durable/ceiling, "ratio (target >= 0.6)")
		}
	}
	if want("copy") {
		b.truncate(ctx)
		best := 0.0
		for _, rows := range []int{100, 1000, 5000} {
			b.truncate(ctx)
			rate, err := b.copyRate(ctx, rows, 2, *duration)
			if err != nil {
				log.Fatalf("bench: copy: %v", err)
			}
			report(fmt.Sprintf("copy_raw_%d_rows", rows), rate, "rows/s")
			best = max(best, rate)
		}
		copyRate = best
		report("copy_raw_best", best, "rows/s")
	}
	if want("batch") {
		b.truncate(ctx)
		r := runLoad(b.url+"/e/bench", 100, *conns, *duration)
		batched = r.Rate * 100
		report("ingest_batch100", batched, "events/s")
		report("ingest_batch100_p50", ms(r.P50), "ms")
		if copyRate > 0 {
			report("ingest_batch100_vs_copy", batched/copyRate, "ratio (target >= 0.75)")
		}
	}
	if want("dispatch") {
		benchDispatch(ctx, b, *starts, *conns)
	}
	if want("resume") {
		benchResume(ctx, b, 100)
	}
	if want("flow") {
		benchFlow(ctx, b, 50, 2000)
	}
	if *showMetrics {
		resp, err := http.Get(b.url + "/metrics")
		if err == nil {
			raw, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			for _, line := range strings.Split(string(raw), "\n") {
				if strings.HasPrefix(line, "herald_ingest_commit") && (strings.Contains(line, "_sum") || strings.Contains(line, "_count")) {
					fmt.Fprintln(os.Stderr, line)
				}
			}
		}
	}
}

func report(name string, v float64, unit string) {
	fmt.Printf("bench: %s %.2f %s\n", name, v, unit)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

type bench struct {
	url    string
	schema string
	base   string
	driver *postgres.Driver
	server *ingest.Server
	http   *http.Server
}

var failures = &atomic.Int64{}

func setup(ctx context.Context, base string, flushers int) (*bench, error) {
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL at %s: %w (start it: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start)", base, err)
	}
	defer conn.Close(ctx)
	schema := "herald_bench_" + strings.ToLower(ulid.Make().String()[16:])
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return nil, err
	}
	url := base
	if strings.Contains(url, "?") {
		url += "&search_path=" + schema
	} else {
		url += "?search_path=" + schema
	}
	d, err := postgres.Open(ctx, url)
	if err != nil {
		return nil, err
	}
	if err := d.Migrate(ctx); err != nil {
		return nil, err
	}
	srv, err := ingest.New(ingest.Config{Store: d, AllowAnyEventKey: true, Flushers: flushers})
	if err != nil {
		return nil, err
	}
	// The ceiling: the same engine and middleware, a handler that reads the
	// body and answers like ingest, storing nothing.
	srv.Engine().POST("/null/:key", func(c *gin.Context) {
		_, _ = io.Copy(io.Discard, c.Request.Body)
		c.JSON(http.StatusOK, gin.H{"ids": []string{"01J00000000000000000000000"}, "status": 200})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	return &bench{url: "http://" + ln.Addr().String(), schema: schema, base: base, driver: d, server: srv, http: hs}, nil
}

func (b *bench) truncate(ctx context.Context) {
	if _, err := b.driver.Pool().Exec(ctx, "TRUNCATE events, pending_events"); err != nil {
		log.Fatalf("bench: truncate: %v", err)
	}
}

func (b *bench) close() {
	_ = b.http.Close()
	b.server.Close()
	_ = b.driver.Close()
	ctx := context.Background()
	if conn, err := pgx.Connect(ctx, b.base); err == nil {
		_, _ = conn.Exec(ctx, "DROP SCHEMA "+b.schema+" CASCADE")
		_ = conn.Close(ctx)
	}
}

// eventBody returns a request body of n events, as one object when n is 1.
func eventBody(n int) []byte {
	var buf bytes.Buffer
	if n > 1 {
		buf.WriteByte('[')
	}
	for i := range n {
		if i > 0 {
			buf.WriteByte(',')
		}
		fmt.Fprintf(&buf, `{"name":"bench/user.signup","data":{"userId":"u_%d","email":"user%d@example.com","plan":"pro","n":%d}}`, i, i, i)
	}
	if n > 1 {
		buf.WriteByte(']')
	}
	return buf.Bytes()
}

type loadResult struct {
	Rate float64       `json:"rate"` // requests per second
	P50  time.Duration `json:"p50"`
	P99  time.Duration `json:"p99"`
}

// runLoad runs the load client in a separate process, as a real client
// would be: its goroutines then do not compete with the server's in one Go
// scheduler, only for the machine's cores.
func runLoad(url string, events, conns int, d time.Duration) loadResult {
	self, err := os.Executable()
	if err != nil {
		log.Fatalf("bench: %v", err)
	}
	// The client runs at the lowest CPU priority: in production clients are on
	// other machines, and here they should not delay the server's wakeups.
	cmd := exec.Command("nice", "-n", "19", self, "--load-url", url, "--load-events", strconv.Itoa(events), "--conns", strconv.Itoa(conns), "--duration", d.String())
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		log.Fatalf("bench: load client: %v", err)
	}
	var r loadResult
	if err := json.Unmarshal(out, &r); err != nil {
		log.Fatalf("bench: load client output %q: %v", out, err)
	}
	return r
}

// load posts body to url from conns keep-alive connections for d (after a
// one-second warm-up) and returns the request rate and latencies.
func load(url string, body []byte, conns int, d time.Duration) loadResult {
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	defer tr.CloseIdleConnections()

	var (
		measuring atomic.Bool
		stop      atomic.Bool
		count     atomic.Int64
		mu        sync.Mutex
		lats      []time.Duration
		wg        sync.WaitGroup
	)
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			for !stop.Load() {
				start := time.Now()
				resp, err := client.Post(url, "application/json", bytes.NewReader(body))
				if err != nil {
					failures.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failures.Add(1)
					continue
				}
				if measuring.Load() {
					count.Add(1)
					local = append(local, time.Since(start))
				}
			}
			mu.Lock()
			lats = append(lats, local...)
			mu.Unlock()
		}()
	}
	time.Sleep(time.Second)
	measuring.Store(true)
	start := time.Now()
	time.Sleep(d)
	measuring.Store(false)
	elapsed := time.Since(start)
	stop.Store(true)
	wg.Wait()
	if f := failures.Load(); f > 0 {
		fmt.Fprintf(os.Stderr, "bench: %d failed requests against %s\n", f, url)
		os.Exit(1)
	}
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	pct := func(p float64) time.Duration {
		if len(lats) == 0 {
			return 0
		}
		return lats[min(len(lats)-1, int(float64(len(lats))*p))]
	}
	return loadResult{Rate: float64(count.Load()) / elapsed.Seconds(), P50: pct(0.50), P99: pct(0.99)}
}

// copyRate COPYs the same rows ingest stores, rows per transaction, from
// workers connections, for d, and returns rows per second.
func (b *bench) copyRate(ctx context.Context, rows, workers int, d time.Duration) (float64, error) {
	data := []byte(`{"userId":"u_1","email":"user1@example.com","plan":"pro","n":1}`)
	var (
		total atomic.Int64
		wg    sync.WaitGroup
		errc  = make(chan error, workers)
	)
	deadline := time.Now().Add(d)
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([][]any, rows)
			for time.Now().Before(deadline) {
				now := time.Now().UTC().Truncate(time.Millisecond)
				for i := range buf {
					buf[i] = []any{ulid.Make().String(), "bench/user.signup", data, now.UnixMilli(), "", now}
				}
				n, err := b.driver.Pool().CopyFrom(ctx, pgx.Identifier{"events"},
					[]string{"id", "name", "data", "ts", "v", "received_at"}, pgx.CopyFromRows(buf))
				if err != nil {
					errc <- err
					return
				}
				total.Add(n)
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return 0, err
	}
	return float64(total.Load()) / time.Since(start).Seconds(), nil
}
