package main

// The serving-process phases: `herald serve` and `herald dev` as users run
// them, measured from outside with the shared load tools
// (../shared/tools/loadgen and e2ebase), next to the anchor a user would
// compare with, in the same run:
//
//   - serve: durable ingest on `herald serve` (PostgreSQL, router running,
//     Temporal connected, no functions synced) against the HTTP ceiling (a
//     handler that stores nothing, same client and flags) and raw COPY into
//     the same database; single-event and 100-event requests, with and
//     without client ids; on the shared server and on a private cluster with
//     stock settings (autovacuum on) after a backlog; herald's peak RSS;
//     and event accepted → workflow started under the single-event load.
//     The same loads on `herald dev` (SQLite), as make dev runs it.
//   - e2e: event → completed run through `herald dev` and the example worker,
//     against the hand-written shim (an HTTP handler calling ExecuteWorkflow,
//     a worker with the same steps) on the same Temporal dev server, with the
//     dev-server tuning `herald dev` applies and without it.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/oklog/ulid/v2"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/workflow"

	"github.com/herald-run/herald"
	"github.com/herald-run/herald/internal/benchtool"
	"github.com/herald-run/herald/internal/pgcluster"
	"github.com/herald-run/herald/internal/temporaltest"
	"github.com/herald-run/herald/internal/wire"
)

// binaries are the programs the serving-process phases run.
type binaries struct {
	herald, demo, loadgen, e2ebase string
}

// buildBinaries builds Herald, the example worker and the shared tools into
// dir. The tools are modules of their own, built in their directories.
func buildBinaries(toolsDir, dir string) binaries {
	b := binaries{
		herald:  filepath.Join(dir, "herald"),
		demo:    filepath.Join(dir, "herald-demo"),
		loadgen: filepath.Join(dir, "loadgen"),
		e2ebase: filepath.Join(dir, "e2ebase"),
	}
	run := func(wd string, args ...string) {
		cmd := exec.Command("go", args...)
		cmd.Dir, cmd.Stdout, cmd.Stderr = wd, os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			log.Fatalf("bench: go %s (in %s): %v", strings.Join(args, " "), wd, err)
		}
	}
	fmt.Fprintln(os.Stderr, "bench: building herald, the example worker, loadgen and e2ebase...")
	run(".", "build", "-o", b.herald, "./cmd/herald")
	run(".", "build", "-o", b.demo, "./examples/demo")
	run(filepath.Join(toolsDir, "loadgen"), "build", "-o", b.loadgen, ".")
	run(filepath.Join(toolsDir, "e2ebase"), "build", "-o", b.e2ebase, ".")
	return b
}

// process is a child process of the bench.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startProcess(logPath string, env []string, bin string, args ...string) *process {
	f, err := os.Create(logPath)
	if err != nil {
		log.Fatalf("bench: %v", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Fatalf("bench: start %s: %v", bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); _ = f.Close(); close(p.done) }()
	return p
}

// stop sends SIGTERM to the process group and waits, then SIGKILL.
func (p *process) stop() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// peakRSS is the process's peak resident set (VmHWM), in MiB.
func (p *process) peakRSS() float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatalf("bench: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitHTTP waits until url answers 200.
func waitHTTP(url string, p *process, logPath string) {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			log.Fatalf("bench: %s exited; see %s", p.cmd.Path, logPath)
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	log.Fatalf("bench: %s did not answer 200 within 2 minutes; see %s", url, logPath)
}

// waitSynced waits until the functions list names fn: the worker has synced.
func waitSynced(url, fn string, p *process, logPath string) {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			log.Fatalf("bench: %s exited; see %s", p.cmd.Path, logPath)
		default:
		}
		if resp, err := http.Get(url); err == nil {
			raw, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if strings.Contains(string(raw), `"`+fn+`"`) {
				time.Sleep(time.Second) // and starts polling
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	log.Fatalf("bench: %s was not synced within 2 minutes; see %s", fn, logPath)
}

// toolResult is one loadgen or e2ebase run.
type toolResult struct {
	rate     float64
	p50, p99 float64 // ms; 0 when the tool does not print them
	count    float64 // events acknowledged or rows copied; 0 when the tool does not print it
	cpu      time.Duration
	line     string
}

var (
	latencyRE = regexp.MustCompile(`p50 ([0-9.]+)ms p99 ([0-9.]+)ms`)
	countRE   = regexp.MustCompile(`: ([0-9]+) (acked|rows)`)
)

// runTool runs a load tool at the lowest CPU priority (the same for the
// anchor and for Herald) and parses its RESULT line.
func runTool(bin string, args ...string) toolResult {
	cmd := exec.Command("nice", append([]string{"-n", "19", bin}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		log.Fatalf("bench: %s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
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
		if m := countRE.FindStringSubmatch(line); m != nil {
			r.count, _ = strconv.ParseFloat(m[1], 64)
		}
	}
	// nice execs the tool, so this is the tool's own CPU.
	r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if r.rate == 0 {
		log.Fatalf("bench: %s printed no RESULT:\n%s", filepath.Base(bin), out)
	}
	fmt.Fprintf(os.Stderr, "bench:   %s\n", r.line)
	return r
}

// sharedDatabase makes a schema of its own on the shared server and returns
// a URL that uses it, and the function that drops it.
func sharedDatabase(ctx context.Context, base string) (string, func()) {
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		log.Fatalf("bench: PostgreSQL at %s: %v (start it: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start)", base, err)
	}
	schema := "herald_serve_" + strings.ToLower(ulid.Make().String()[16:])
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		log.Fatalf("bench: %v", err)
	}
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "search_path=" + schema, func() {
		_, _ = conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		_ = conn.Close(context.Background())
	}
}

// serveOpts configures the serving-process phases.
type serveOpts struct {
	bins     binaries
	dir      string
	sharedDB string
	duration time.Duration
	backlog  time.Duration
	targets  []string // "shared", "stock"
}

const (
	benchEventKey   = "bench-event-key"
	benchSigningKey = "bench-signing-key"
)

// benchServe measures durable ingest on `herald serve`.
func benchServe(ctx context.Context, o serveOpts) {
	ts, err := temporaltest.Start(ctx, temporaltest.Options{})
	if err != nil {
		log.Fatalf("bench: temporal dev server: %v", err)
	}
	defer func() { _ = ts.Stop() }()
	d := o.duration.String()

	// The HTTP ceiling: loadgen's own handler that stores nothing.
	nullAddr := freeAddr()
	null := startProcess(filepath.Join(o.dir, "null.log"), nil, o.bins.loadgen, "-null", nullAddr)
	time.Sleep(300 * time.Millisecond)
	ceiling, ceilingCPU := metered("load client", func() toolResult {
		return runTool(o.bins.loadgen, "-url", "http://"+nullAddr+"/e/x", "-c", "64", "-batch", "1", "-d", d)
	}, processCPU("handler", null))
	ceiling100, ceiling100CPU := metered("load client", func() toolResult {
		return runTool(o.bins.loadgen, "-url", "http://"+nullAddr+"/e/x", "-c", "8", "-batch", "100", "-d", d)
	}, processCPU("handler", null))
	null.stop()
	report("serve_http_ceiling_single", ceiling.rate, "req/s")
	report("serve_http_ceiling_single_p99", ceiling.p99, "ms")
	reportCPU("serve_http_ceiling_single_cpu", ceilingCPU, ceiling.count, "request")
	report("serve_http_ceiling_batch100", ceiling100.rate, "events/s")
	reportCPU("serve_http_ceiling_batch100_cpu", ceiling100CPU, ceiling100.count, "event")

	for _, target := range o.targets {
		if target == "dev" {
			benchDevIngest(o, ts.FrontendHostPort(), ceiling.rate)
			continue
		}
		var url string
		switch target {
		case "shared":
			u, drop := sharedDatabase(ctx, o.sharedDB)
			defer drop()
			url = u
		case "stock":
			c, err := pgcluster.Start(ctx)
			if err != nil {
				fmt.Fprintf(os.Stderr, "bench: skipping the stock-PostgreSQL figures: %v\n", err)
				continue
			}
			defer c.Stop()
			url = c.URL()
		default:
			log.Fatalf("bench: -serve-targets: unknown target %q (shared, stock or dev)", target)
		}
		addr := freeAddr()
		logPath := filepath.Join(o.dir, "herald-serve-"+target+".log")
		h := startProcess(logPath, nil, o.bins.herald, "serve", "--addr", addr, "--database-url", url, "--migrate",
			"--event-keys", benchEventKey, "--signing-key", benchSigningKey, "--temporal-address", ts.FrontendHostPort(),
			"--log-level", "warn")
		waitHTTP("http://"+addr+"/readyz", h, logPath)
		ingestURL := "http://" + addr + "/e/" + benchEventKey
		name := "serve_" + target
		if target == "stock" && o.backlog > 0 {
			// A table in use: what the stock server's autovacuum and the
			// events table look like after a while in production.
			b := runTool(o.bins.loadgen, "-url", ingestURL, "-c", "8", "-batch", "100", "-d", o.backlog.String(), "-noid")
			report(name+"_backlog_batch100_noid", b.rate, "events/s")
		}
		heraldLoad := func(args ...string) (toolResult, []cpuPart) {
			return metered("load client", func() toolResult {
				return runTool(o.bins.loadgen, append([]string{"-url", ingestURL, "-d", d}, args...)...)
			}, processCPU("herald", h), commandCPU("postgres", "postgres"))
		}
		single, singleCPU := heraldLoad("-c", "64", "-batch", "1")
		singleNoID, _ := heraldLoad("-c", "64", "-batch", "1", "-noid")
		batch, batchCPU := heraldLoad("-c", "8", "-batch", "100")
		batchNoID, _ := heraldLoad("-c", "8", "-batch", "100", "-noid")
		// Last, as it syncs a function: the figures above are taken with none.
		fromSent, fromAck := probeStarts(ctx, o, "http://"+addr, ingestURL, ts.Client(), name)
		rss := h.peakRSS()
		h.stop()
		raw, rawCPU := metered("COPY client", func() toolResult {
			return runTool(o.bins.loadgen, "-raw", url, "-c", "8", "-batch", "100", "-d", d)
		}, commandCPU("postgres", "postgres"))

		report(name+"_single", single.rate, "events/s")
		report(name+"_single_p99", single.p99, "ms (target <= 20)")
		report(name+"_single_vs_ceiling", single.rate/ceiling.rate, "ratio (target >= 0.6)")
		reportCPU(name+"_single_cpu", singleCPU, single.count, "event")
		report(name+"_single_noid", singleNoID.rate, "events/s")
		report(name+"_single_noid_p99", singleNoID.p99, "ms (target <= 20)")
		report(name+"_single_noid_vs_ceiling", singleNoID.rate/ceiling.rate, "ratio (target >= 0.6)")
		report(name+"_copy_raw", raw.rate, "rows/s")
		reportCPU(name+"_copy_raw_cpu", rawCPU, raw.count, "row")
		report(name+"_batch100", batch.rate, "events/s")
		report(name+"_batch100_vs_copy", batch.rate/raw.rate, "ratio (target >= 0.75)")
		reportCPU(name+"_batch100_cpu", batchCPU, batch.count, "event")
		report(name+"_batch100_noid", batchNoID.rate, "events/s")
		report(name+"_batch100_noid_vs_copy", batchNoID.rate/raw.rate, "ratio (target >= 0.75)")
		report(name+"_peak_rss", rss, "MiB (target < 256)")
		report(name+"_single_event_to_start_p50", ms(percentile(fromAck, 50)), "ms from the probe's acknowledgement (target <= 10)")
		report(name+"_single_event_to_start_p99", ms(percentile(fromAck, 99)), "ms from the probe's acknowledgement (target <= 50)")
		report(name+"_single_request_to_start_p50", ms(percentile(fromSent, 50)), "ms from the probe's request, its ingest included")
		report(name+"_single_request_to_start_p99", ms(percentile(fromSent, 99)), "ms from the probe's request, its ingest included")
	}
}

// probeFn is the function probeStarts syncs: it only needs to be started.
var probeFn = herald.NewFunction(herald.FunctionOpts{ID: "probe", Triggers: []herald.Trigger{herald.OnEvent("bench/probe")}},
	func(ctx workflow.Context, in herald.Input[map[string]any]) (bool, error) { return true, nil })

// probeStarts measures event accepted → workflow started on the serving
// process under the single-event load: it syncs a function on bench/probe
// events (no worker runs it: its runs only have to start), runs the 64-
// connection load of events that match nothing, and beside it sends a probe
// event every 20 ms. It returns, per probe, the time to the start of its
// workflow in Temporal from sending its request (the ingest request's own
// latency included) and from its acknowledgement (the 200 received: Herald
// had accepted it; the router may start it before the answer arrives, so a
// delay can be negative).
func probeStarts(ctx context.Context, o serveOpts, heraldURL, ingestURL string, tc client.Client, name string) (fromSent, fromAck []time.Duration) {
	w, err := herald.NewWorker(herald.WorkerOptions{App: "bench", HeraldURL: heraldURL, SigningKey: benchSigningKey, Client: tc})
	if err != nil {
		log.Fatalf("bench: %v", err)
	}
	if err := w.Register(probeFn); err != nil {
		log.Fatalf("bench: %v", err)
	}
	if err := w.Sync(ctx); err != nil {
		log.Fatalf("bench: sync the probe function: %v", err)
	}
	done := make(chan toolResult, 1)
	go func() {
		done <- runTool(o.bins.loadgen, "-url", ingestURL, "-c", "64", "-batch", "1", "-d", o.duration.String())
	}()
	time.Sleep(time.Second) // the load is under way
	type probe struct {
		id          string
		sent, acked time.Time
	}
	var probes []probe
	stop := time.Now().Add(o.duration - 2*time.Second)
	for i := 0; time.Now().Before(stop); i++ {
		id := fmt.Sprintf("probe-%s-%d", name, i)
		sent := time.Now()
		resp, err := http.Post(ingestURL, "application/json", strings.NewReader(fmt.Sprintf(`{"name":"bench/probe","id":%q}`, id)))
		if err != nil {
			log.Fatalf("bench: probe: %v", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			log.Fatalf("bench: probe: %s", resp.Status)
		}
		probes = append(probes, probe{id, sent, time.Now()})
		time.Sleep(20 * time.Millisecond)
	}
	load := <-done
	fmt.Fprintf(os.Stderr, "bench:   %d probes beside %.0f events/s\n", len(probes), load.rate)
	for _, p := range probes {
		deadline := time.Now().Add(30 * time.Second)
		for {
			desc, err := tc.DescribeWorkflowExecution(ctx, wire.WorkflowID("bench", "probe", p.id), "")
			if err == nil {
				started := desc.GetWorkflowExecutionInfo().GetStartTime().AsTime()
				fromSent = append(fromSent, started.Sub(p.sent))
				fromAck = append(fromAck, started.Sub(p.acked))
				break
			}
			if time.Now().After(deadline) {
				log.Fatalf("bench: the workflow of probe %s did not start: %v", p.id, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return fromSent, fromAck
}

// benchDevIngest measures durable ingest on `herald dev` as make dev runs
// it (SQLite in the data dir, router running, Temporal connected, no
// functions synced): single-event and 100-event requests, with and without
// client ids, against the HTTP ceiling measured in the same run, and its
// peak RSS. SQLite has no COPY to compare with; the 100-event figure is
// reported as is.
func benchDevIngest(o serveOpts, temporal string, ceiling float64) {
	addr := freeAddr()
	logPath := filepath.Join(o.dir, "herald-dev-ingest.log")
	h := startProcess(logPath, nil, o.bins.herald, "dev", "--addr", addr, "--data-dir", filepath.Join(o.dir, "dev-ingest"),
		"--temporal-address", temporal, "--log-level", "warn")
	waitHTTP("http://"+addr+"/readyz", h, logPath)
	url := "http://" + addr + "/e/dev"
	d := o.duration.String()
	devLoad := func(args ...string) (toolResult, []cpuPart) {
		return metered("load client", func() toolResult {
			return runTool(o.bins.loadgen, append([]string{"-url", url, "-d", d}, args...)...)
		}, processCPU("herald dev", h))
	}
	single, singleCPU := devLoad("-c", "64", "-batch", "1")
	singleNoID, _ := devLoad("-c", "64", "-batch", "1", "-noid")
	batch, batchCPU := devLoad("-c", "8", "-batch", "100")
	batchNoID, _ := devLoad("-c", "8", "-batch", "100", "-noid")
	rss := h.peakRSS()
	h.stop()
	report("dev_single", single.rate, "events/s (herald dev, SQLite)")
	report("dev_single_p99", single.p99, "ms")
	report("dev_single_vs_ceiling", single.rate/ceiling, "ratio")
	reportCPU("dev_single_cpu", singleCPU, single.count, "event")
	report("dev_single_noid", singleNoID.rate, "events/s")
	report("dev_single_noid_vs_ceiling", singleNoID.rate/ceiling, "ratio")
	report("dev_batch100", batch.rate, "events/s")
	reportCPU("dev_batch100_cpu", batchCPU, batch.count, "event")
	report("dev_batch100_noid", batchNoID.rate, "events/s")
	report("dev_peak_rss", rss, "MiB (target < 256)")
}

// benchE2E measures event → completed run: `herald dev` with the example
// worker against the hand-written shim, with the dev-server tuning herald
// dev applies and without it. Each side runs on a Temporal dev server of its
// own, started fresh, so neither pays for what the other left behind (its
// closed workflows' timer and retention tasks); the sides alternate over
// rounds (shim, Herald, Herald, shim, ...) and the ratio is of the mean
// rates, because one run on 2 shared cores swings by a quarter either way.
func benchE2E(ctx context.Context, o serveOpts, n, rounds int) {
	for _, tuned := range []bool{true, false} {
		label := "tuned"
		if !tuned {
			label = "untuned"
		}
		var shimRates, heraldRates []float64
		var shimCPU, heraldCPU [][]cpuPart
		var shimHistory, heraldHistory int64
		for round := range rounds {
			sides := []string{"shim", "herald"}
			if round%2 == 1 {
				sides = []string{"herald", "shim"}
			}
			for _, side := range sides {
				ts, err := temporaltest.Start(ctx, temporaltest.Options{NoTuning: !tuned})
				if err != nil {
					log.Fatalf("bench: temporal dev server: %v", err)
				}
				temporal := ts.FrontendHostPort()
				switch side {
				case "shim":
					rate, cpu := runShim(o, fmt.Sprintf("%s-%d", label, round), temporal, n)
					shimRates, shimCPU = append(shimRates, rate), append(shimCPU, cpu)
					shimHistory = historyLength(ctx, ts.Client(), "ShimWelcome")
				case "herald":
					rate, cpu := runHeraldDev(o, fmt.Sprintf("%s-%d", label, round), temporal, n)
					heraldRates, heraldCPU = append(heraldRates, rate), append(heraldCPU, cpu)
					heraldHistory = historyLength(ctx, ts.Client(), "welcome-email")
				}
				_ = ts.Stop()
			}
		}
		shimMean, heraldMean := benchtool.Mean(shimRates), benchtool.Mean(heraldRates)
		report("e2e_shim_"+label, shimMean, fmt.Sprintf("runs/s (mean of %d, each on its own dev server: %s)", len(shimRates), benchtool.RateList(shimRates)))
		report("e2e_herald_dev_"+label, heraldMean, fmt.Sprintf("runs/s (mean of %d, each on its own dev server: %s)", len(heraldRates), benchtool.RateList(heraldRates)))
		report("e2e_herald_vs_shim_"+label, heraldMean/shimMean, "ratio of the means (target >= 0.95)")
		reportRunCPU("e2e_shim_cpu_"+label, sumParts(shimCPU), float64(n*len(shimCPU)))
		reportRunCPU("e2e_herald_dev_cpu_"+label, sumParts(heraldCPU), float64(n*len(heraldCPU)))
		if tuned {
			report("e2e_history_events_shim", float64(shimHistory), "events per run")
			report("e2e_history_events_herald", float64(heraldHistory), "events per run")
			report("e2e_history_events_herald_minus_shim", float64(heraldHistory-shimHistory), "events (target <= 2)")
		}
	}
}

// benchE2EAsMakeDev measures what `make dev` gives: herald dev starting its
// own Temporal dev server, whose state is a SQLite file in the data dir (the
// sides above share an in-memory server). Its anchor, in the same run, is the
// shim on a dev server with a file of its own and the same settings
// (temporaltest gives a file the ones herald dev uses). One round each, shim
// first.
func benchE2EAsMakeDev(ctx context.Context, o serveOpts, n int) {
	ts, err := temporaltest.Start(ctx, temporaltest.Options{DBFile: filepath.Join(o.dir, "shim-own-server.db")})
	if err != nil {
		log.Fatalf("bench: temporal dev server: %v", err)
	}
	shim, shimCPU := runShim(o, "own-server", ts.FrontendHostPort(), n)
	_ = ts.Stop()
	cli, err := temporaltest.CLIPath()
	if err != nil {
		log.Fatalf("bench: %v", err)
	}
	_, uiPort, _ := net.SplitHostPort(freeAddr())
	herald, heraldCPU := runHeraldDev(o, "own-server", freeAddr(), n, "--temporal-cli", cli, "--temporal-ui-port", uiPort)
	report("e2e_shim_file_server", shim, "runs/s (the shim on a dev server keeping its state in a SQLite file, with herald dev's settings)")
	report("e2e_herald_dev_own_server", herald, "runs/s (herald dev as make dev runs it: its own dev server, a SQLite file in the data dir)")
	report("e2e_herald_dev_own_server_vs_shim", herald/shim, "ratio (one round each)")
	reportRunCPU("e2e_shim_file_server_cpu", shimCPU, float64(n))
	reportRunCPU("e2e_herald_dev_own_server_cpu", heraldCPU, float64(n))
}

// runShim runs the hand-written shim (e2ebase -serve) against the Temporal
// dev server at temporal, posts n signups to it, and returns the completed
// runs per second and the CPU each process used for them.
func runShim(o serveOpts, name, temporal string, n int) (float64, []cpuPart) {
	addr := freeAddr()
	shim := startProcess(filepath.Join(o.dir, "shim-"+name+".log"), nil, o.bins.e2ebase, "-serve", addr, "-addr", temporal)
	time.Sleep(time.Second)
	s, cpu := metered("client", func() toolResult {
		return runTool(o.bins.e2ebase, "-post", "http://"+addr+"/e/x", "-n", strconv.Itoa(n), "-type", "ShimWelcome", "-addr", temporal)
	}, commandCPU("temporal", "temporal"), processCPU("shim", shim))
	shim.stop()
	return s.rate, cpu
}

// runHeraldDev runs herald dev with the example worker against the Temporal
// dev server at temporal (which herald dev starts when none answers there),
// posts n signups with e2ebase, and returns the completed runs per second
// and the CPU each process used for them.
func runHeraldDev(o serveOpts, name, temporal string, n int, extra ...string) (float64, []cpuPart) {
	addr := freeAddr()
	devLog := filepath.Join(o.dir, "herald-dev-"+name+".log")
	args := append([]string{"dev", "--addr", addr, "--data-dir", filepath.Join(o.dir, "dev-"+name),
		"--temporal-address", temporal, "--worker", o.bins.demo, "--log-level", "warn"}, extra...)
	dev := startProcess(devLog, nil, o.bins.herald, args...)
	waitHTTP("http://"+addr+"/readyz", dev, devLog)
	waitSynced("http://"+addr+"/v1/functions", "welcome-email", dev, devLog)
	h, cpu := metered("client", func() toolResult {
		return runTool(o.bins.e2ebase, "-post", "http://"+addr+"/e/dev", "-n", strconv.Itoa(n), "-type", "welcome-email", "-addr", temporal)
	}, commandCPU("temporal", "temporal"), processCPU("herald dev", dev), commandCPU("worker", filepath.Base(o.bins.demo)))
	dev.stop()
	return h.rate, cpu
}

// historyLength is benchtool.HistoryLength, fatal on an error.
func historyLength(ctx context.Context, c client.Client, workflowType string) int64 {
	n, err := benchtool.HistoryLength(ctx, c, workflowType)
	if err != nil {
		log.Fatalf("bench: %v", err)
	}
	return n
}

// percentile returns the p-th percentile of ds (nearest rank), sorting ds.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	i := (len(ds)*p+99)/100 - 1
	return ds[max(i, 0)]
}
