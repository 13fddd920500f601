package fault

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/herald-run/herald/internal/faultload"
)

var fullFlag = flag.Bool("fault.full", false, "run the full fault scenarios: longer load and a 30 s Temporal outage (also HERALD_FAULT_FULL=1)")

// full reports whether the long versions of the scenarios run.
func full() bool {
	if *fullFlag {
		return true
	}
	v, _ := strconv.ParseBool(os.Getenv("HERALD_FAULT_FULL"))
	return v
}

// pick returns short in the default run and long under -fault.full.
func pick[T any](short, long T) T {
	if full() {
		return long
	}
	return short
}

// quietLog discards the logs of the test's own Temporal clients.
var quietLog = slog.New(slog.DiscardHandler)

// Binaries built once per test run, and the directory the package's shared
// processes keep their files in.
var (
	heraldBin string
	workerBin string
	workDir   string
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	workDir, err = os.MkdirTemp("", "herald-fault-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "fault:", err)
		return 1
	}
	defer os.RemoveAll(workDir)
	if err := buildBinaries(filepath.Join(workDir, "bin")); err != nil {
		fmt.Fprintln(os.Stderr, "fault:", err)
		return 1
	}
	defer stopSharedTemporal()
	return m.Run()
}

// buildBinaries builds herald and the fault worker into dir with one go
// build, so both link in parallel. Stripping symbols halves the link time.
func buildBinaries(dir string) error {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("the go command is needed to build herald: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	start := time.Now()
	cmd := exec.Command(gobin, "build", "-ldflags=-s -w", "-o", dir+string(filepath.Separator),
		"github.com/herald-run/herald/cmd/herald",
		"github.com/herald-run/herald/internal/fault/faultworker")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	heraldBin, workerBin = filepath.Join(dir, "herald"), filepath.Join(dir, "faultworker")
	fmt.Printf("fault: built herald and faultworker in %s\n", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// The Temporal dev server shared by the scenarios that do not restart it.
var shared struct {
	once sync.Once
	srv  *temporalServer
	err  error
}

func sharedTemporal(t *testing.T) *temporalServer {
	t.Helper()
	shared.once.Do(func() {
		shared.srv, shared.err = newTemporalServer(filepath.Join(workDir, "temporal-shared"), false)
		if shared.err == nil {
			shared.err = shared.srv.start()
		}
	})
	if shared.err != nil {
		t.Fatalf("shared Temporal dev server: %v", shared.err)
	}
	return shared.srv
}

func stopSharedTemporal() {
	if shared.srv != nil {
		shared.srv.stop()
	}
}

// scenario is one fault test's setup: a directory for its processes' logs
// (printed when the test fails), and the app id and event name of its load.
type scenario struct {
	t     *testing.T
	name  string
	dir   string
	app   string
	event string
}

func newScenario(t *testing.T, name string) *scenario {
	t.Helper()
	dir := t.TempDir()
	dumpLogsOnFailure(t, dir)
	t.Logf("fault: %s: %s version", name, pick("short", "full"))
	return &scenario{
		t:     t,
		name:  name,
		dir:   dir,
		app:   fmt.Sprintf("fault-%s-%d-%d", name, os.Getpid(), time.Now().UnixMilli()%100000),
		event: "fault/" + name,
	}
}

// sendLoad starts the scenario's load at targets.
func (s *scenario) sendLoad(targets []string, failover bool, interval time.Duration) *faultload.Sender {
	l := faultload.Start(faultload.Options{Targets: targets, Failover: failover, EventKey: eventKey, Event: s.event, Prefix: s.name, Interval: interval})
	s.t.Cleanup(l.Stop)
	return l
}

// quickSteps is the worker of the scenarios that do not kill it: an instant
// step with a short StepTimeout. The timeout matters when Temporal stops: a
// step handed out as the server went down, whose poll response or completion
// never reached the other side, stays Started until the timeout, and
// Herald's default is five minutes.
var quickSteps = workerOpts{stepTimeout: 10 * time.Second}

// worker starts a faultworker for the scenario's app.
func (s *scenario) worker(name, heraldURL, temporal string, o workerOpts) *proc {
	o.app, o.heraldURL, o.temporal, o.event = s.app, heraldURL, temporal, s.event
	return startWorker(s.t, s.dir, name, o)
}

// herald starts a herald serve of the scenario.
func (s *scenario) herald(name string, o heraldOpts) *herald {
	if o.systemQueue == "" {
		o.systemQueue = "herald-system-" + s.app
	}
	return startHerald(s.t, s.dir, name, o)
}

// sleepUntil sleeps until t.
func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }
