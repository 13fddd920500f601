package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/herald-run/herald"
	"github.com/herald-run/herald/ingest"
	"github.com/herald-run/herald/internal/console"
	"github.com/herald-run/herald/internal/server"
	"github.com/herald-run/herald/internal/temporalx"
)

// temporalCLIVersion is the Temporal CLI Herald's dev mode is tested with.
const temporalCLIVersion = "v1.5.1"

const installTemporalHint = `the Temporal CLI was not found in ./bin or on PATH. Install it (about 4 minutes the first time) with
    make tools
or
    GOBIN="$PWD/bin" go install github.com/temporalio/cli/cmd/temporal@` + temporalCLIVersion

func devCommand() command {
	var (
		addr, dataDir, temporalBin, workerCmd *string
		temporalUI                            *string
		uiPort                                *int
		logLevel                              *string
		limits                                limitFlags
		temporal                              temporalFlags
		housekeeping                          housekeepingFlags
	)
	return command{
		name:    "dev",
		summary: "run Herald locally: SQLite store, a Temporal dev server with its Web UI, any event key accepted",
		flags: func(fs *flagSet) {
			addr = fs.String("addr", "HERALD_ADDR", "127.0.0.1:8288", "address the HTTP API listens on")
			dataDir = fs.String("data-dir", "HERALD_DATA_DIR", ".herald", "directory for the SQLite database, the Temporal dev server's database and its log")
			temporal = addTemporalFlags(fs, "a dev server is started there unless one already answers")
			uiPort = fs.Int("temporal-ui-port", "HERALD_TEMPORAL_UI_PORT", 8233, "port of the Temporal Web UI of the dev server Herald starts")
			temporalUI = fs.String("temporal-ui-url", "HERALD_TEMPORAL_UI_URL", "", "base URL of the Temporal Web UI the console links runs to (default: http://127.0.0.1:<temporal-ui-port>)")
			temporalBin = fs.String("temporal-cli", "HERALD_TEMPORAL_CLI", "", "path to the temporal CLI binary (default: ./bin/temporal, then PATH)")
			logLevel = fs.String("log-level", "HERALD_LOG_LEVEL", "info", "log level: debug, info, warn or error")
			workerCmd = fs.String("worker", "HERALD_DEV_WORKER", "", "a command that runs your app's worker, started through sh once Herald is ready, with HERALD_URL, TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE set, and stopped with Herald (e.g. 'go run ./examples/demo'; the example app has no in-process mode)")
			limits = addLimitFlags(fs)
			housekeeping = addHousekeepingFlags(fs)
		},
		run: func(ctx context.Context, fs *flagSet, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Sprintf("unexpected arguments %q", args)}
			}
			if err := temporal.check(); err != nil {
				return err
			}
			tuneGC()
			hk, jobs, err := housekeeping.options()
			if err != nil {
				return err
			}
			log, err := newLogger("text", *logLevel)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(*dataDir, 0o755); err != nil {
				return fmt.Errorf("create data dir: %w", err)
			}

			dbPath := filepath.Join(*dataDir, "herald.db")
			st, err := openStore(ctx, "sqlite:"+dbPath)
			if err != nil {
				return err
			}
			defer st.Close()
			if err := st.Migrate(ctx); err != nil {
				return err
			}

			var temporalProc *devServer
			if temporalx.Reachable(*temporal.address, 500*time.Millisecond) {
				log.Info("using the Temporal server already running", "address", *temporal.address)
			} else {
				temporalProc, err = startTemporalDevServer(log, *temporalBin, *temporal.address, *temporal.namespace, *uiPort, *dataDir)
				if err != nil {
					return err
				}
				defer temporalProc.stop(log)
			}

			tr, err := startTracing(ctx, log)
			if err != nil {
				return err
			}
			defer tr.stop(log)
			tc, err := temporal.client(log, tr.interceptors...)
			if err != nil {
				return err
			}
			defer tc.Close()
			if err := waitTemporal(ctx, log, tc, temporalProc); err != nil {
				return err
			}
			if err := temporalx.EnsureSearchAttributes(ctx, tc, *temporal.namespace); err != nil {
				return err
			}

			uiURL := "(the Temporal server at " + *temporal.address + " was already running)"
			if temporalProc != nil {
				uiURL = "http://127.0.0.1:" + strconv.Itoa(*uiPort)
			}
			consoleUI := *temporalUI
			if consoleUI == "" {
				consoleUI = "http://127.0.0.1:" + strconv.Itoa(*uiPort)
			}
			// The worker stops first, while Herald still answers its outcome
			// reports; then Herald stops.
			workerCtx, stopWorker := context.WithCancel(ctx)
			workerDone := make(chan struct{})
			var workerStarted atomic.Bool
			serveCtx, stopServing := context.WithCancel(context.Background())
			go func() {
				<-ctx.Done()
				if workerStarted.Load() {
					<-workerDone // runWorker bounds the wait (workerStopGrace)
				}
				stopServing()
			}()
			defer func() {
				// Herald has stopped (Ctrl-C, or an error): so does the worker.
				stopWorker()
				if workerStarted.Load() {
					<-workerDone
				}
				stopServing()
			}()
			return server.Run(serveCtx, server.Options{
				Addr:              *addr,
				Store:             st,
				Temporal:          tc,
				Logger:            log,
				Router:            limits.router(tr.on),
				MaxConnections:    *limits.maxConns,
				Housekeeping:      hk,
				Console:           console.Config{TemporalUIURL: consoleUI, TemporalNamespace: *temporal.namespace},
				TemporalNamespace: *temporal.namespace,
				Ingest: ingest.Config{
					Tracing:          tr.on,
					Jobs:             jobs,
					AllowAnyEventKey: true,
					Limits:           limits.limits(),
					Flushers:         1, // SQLite has one writer
					ReadyChecks:      map[string]func(context.Context) error{"temporal": temporalx.HealthCheck(tc)},
				},
				Ready: func(_ context.Context, url string) {
					if *workerCmd != "" {
						workerStarted.Store(true)
						go func() {
							defer close(workerDone)
							runWorker(workerCtx, log, *workerCmd, []string{
								"HERALD_URL=" + url,
								"TEMPORAL_ADDRESS=" + *temporal.address,
								"TEMPORAL_NAMESPACE=" + *temporal.namespace,
							}, fs.stderr)
						}()
					}
					fmt.Fprintf(fs.stderr, "\nHerald dev server is ready.\n"+
						"  Console       %s/\n"+
						"  Herald API    %s   (any event key works in dev)\n"+
						"  Temporal UI   %s\n"+
						"  Data          %s\n\n"+
						"Send an event:\n"+
						"  curl -s -X POST %s/e/dev -d '{\"name\":\"demo/user.signup\",\"data\":{\"userId\":\"u_1\",\"email\":\"ada@example.com\",\"plan\":\"pro\"}}'\n"+
						"List events and their runs:\n"+
						"  curl -s %s/v1/events\n"+
						"  curl -s %s/v1/events/<id>/runs\n\n"+
						"%s\n"+
						"Press Ctrl-C to stop.\n\n",
						url, url, uiURL, *dataDir, url, url, url, workerHint(*workerCmd, url))
				},
			})
		},
	}
}

func findTemporalCLI(explicit string) (string, error) {
	if explicit != "" {
		if _, err := os.Stat(explicit); err != nil {
			return "", fmt.Errorf("temporal CLI at %s: %w", explicit, err)
		}
		return explicit, nil
	}
	if p, err := filepath.Abs(filepath.Join("bin", "temporal")); err == nil {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath("temporal"); err == nil {
		return p, nil
	}
	return "", errors.New(installTemporalHint)
}

// startTemporalDevServer starts the Temporal CLI dev server as a child
// process, with its database and log in dataDir and Herald's search
// attributes registered.
func startTemporalDevServer(log *slog.Logger, bin, address, namespace string, uiPort int, dataDir string) (*devServer, error) {
	path, err := findTemporalCLI(bin)
	if err != nil {
		return nil, err
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("temporal address %q: %w", address, err)
	}
	if host == "" || host == "localhost" {
		host = "127.0.0.1"
	}
	logPath := filepath.Join(dataDir, "temporal.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open temporal log: %w", err)
	}
	args := []string{"server", "start-dev",
		"--ip", host, "--port", port, "--ui-port", strconv.Itoa(uiPort),
		"--db-filename", filepath.Join(dataDir, "temporal.db"),
		"--namespace", namespace,
		// Task priority needs the new matcher on this server version.
		"--dynamic-config-value", "matching.useNewMatcher=true",
	}
	args = append(args, temporalx.DevServerFile...)
	args = append(args, temporalx.DevServerTuning...)
	args = append(args, "--log-level", "warn")
	for _, sa := range temporalx.SearchAttributes {
		args = append(args, "--search-attribute", sa+"=Keyword")
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group: Ctrl-C reaches Herald, which stops the dev server
	// after its own shutdown, in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	log.Info("starting the Temporal dev server", "cli", path, "address", address, "ui", "http://127.0.0.1:"+strconv.Itoa(uiPort), "log", logPath)
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start temporal dev server: %w", err)
	}
	dev := &devServer{cmd: cmd, exited: make(chan struct{}), logPath: logPath}
	go func() {
		_ = cmd.Wait()
		_ = logFile.Close()
		close(dev.exited)
	}()
	return dev, nil
}

// waitTemporal waits until Temporal answers health checks, with progress
// messages, failing early if the dev server Herald started has exited.
func waitTemporal(ctx context.Context, log *slog.Logger, tc client.Client, dev *devServer) error {
	start := time.Now()
	lastNote := start
	for {
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := tc.CheckHealth(hctx, &client.CheckHealthRequest{})
		cancel()
		if err == nil {
			log.Info("Temporal is ready", "after", time.Since(start).Round(time.Millisecond))
			return nil
		}
		if dev != nil {
			select {
			case <-dev.exited:
				return fmt.Errorf("the Temporal dev server exited during startup; see %s", dev.logPath)
			default:
			}
		}
		if time.Since(start) > 2*time.Minute {
			return fmt.Errorf("the Temporal server did not become ready within 2 minutes: %w", err)
		}
		if time.Since(lastNote) > 5*time.Second {
			log.Info("still waiting for Temporal to start", "waited", time.Since(start).Round(time.Second))
			lastNote = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// devServer is a Temporal CLI dev server Herald started.
type devServer struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
}

// stop interrupts the dev server and waits for it, killing it after 10s.
func (d *devServer) stop(log *slog.Logger) {
	if d == nil {
		return
	}
	log.Info("stopping the Temporal dev server")
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.exited
	}
}

// workerStopGrace is how long a worker has to stop after SIGTERM before
// SIGKILL: a Herald worker's default stop timeout
// (herald.DefaultStopTimeout), in which its in-flight steps finish, and a
// margin.
const workerStopGrace = herald.DefaultStopTimeout + 5*time.Second

// runWorker runs the user's worker command through sh, in a process group
// of its own, until ctx is done; then it sends the group SIGTERM and, after
// workerStopGrace, SIGKILL. A worker that exits on its own is reported;
// Herald keeps serving.
func runWorker(ctx context.Context, log *slog.Logger, command string, env []string, out io.Writer) {
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	log.Info("starting the worker", "command", command)
	if err := cmd.Start(); err != nil {
		log.Error("the worker did not start", "command", command, "err", err)
		return
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		log.Error("the worker exited; Herald keeps serving (restart the worker, or Herald)", "command", command, "err", err)
		return
	case <-ctx.Done():
	}
	log.Info("stopping the worker: its steps in flight finish first")
	pgid := cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	// sh may exit at once and leave the worker stopping: wait for every
	// process of the group, not only for sh.
	deadline := time.After(workerStopGrace)
	<-exited
	for syscall.Kill(-pgid, 0) == nil {
		select {
		case <-deadline:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// workerHint is the banner's line about the app's worker.
func workerHint(command, url string) string {
	if command != "" {
		return "Worker: " + command + " (stopped with Herald)\n"
	}
	return "No worker runs with this Herald. Run your app's worker against it, for example:\n" +
		"  HERALD_URL=" + url + " go run ./examples/demo\n" +
		"or start one with Herald: herald dev --worker 'go run ./examples/demo'\n"
}
