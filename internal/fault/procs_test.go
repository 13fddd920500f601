package fault

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/herald-run/herald/internal/pgcluster"
	"github.com/herald-run/herald/internal/subproc"
	"github.com/herald-run/herald/internal/temporaltest"
	"github.com/herald-run/herald/internal/temporalx"
)

// proc is a subprocess the test owns (see package subproc).
type proc = subproc.Proc

// startProc starts bin with args, appending its output to logPath. cred, when
// set, runs it as another user.
func startProc(name, logPath string, cred *syscall.Credential, env []string, bin string, args ...string) (*proc, error) {
	return subproc.Start(name, logPath, cred, env, bin, args...)
}

// dumpLogsOnFailure prints the tail of every log in dir when the test fails
// (or always, with HERALD_FAULT_LOGS=1).
func dumpLogsOnFailure(t *testing.T, dir string) {
	t.Cleanup(func() {
		if always, _ := strconv.ParseBool(os.Getenv("HERALD_FAULT_LOGS")); !t.Failed() && !always {
			return
		}
		paths, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		sort.Strings(paths)
		for _, p := range paths {
			t.Logf("--- tail of %s:\n%s", filepath.Base(p), tail(p, 60))
		}
	})
}

func tail(path string, n int) string { return subproc.Tail(path, n) }

// baseEnv is the test's environment without Herald's variables, so a
// developer's shell settings never leak into the processes under test.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HERALD_") {
			env = append(env, kv)
		}
	}
	return env
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Keys the herald serve processes are started with.
const (
	eventKey   = "fault-event-key"
	signingKey = "fault-signing-key"
)

// heraldOpts configures one `herald serve` process.
type heraldOpts struct {
	addr        string // 127.0.0.1:port
	dbURL       string
	temporal    string // host:port
	systemQueue string
	env         []string // more HERALD_* settings, e.g. HERALD_HOUSEKEEPING_INTERVAL=1s
}

// herald is a running `herald serve` subprocess.
type herald struct {
	*proc
	url string
}

// startHerald starts `herald serve` (migrating the database) and waits until
// /healthz answers.
func startHerald(t *testing.T, dir, name string, o heraldOpts) *herald {
	t.Helper()
	env := append(baseEnv(),
		"HERALD_DATABASE_URL="+o.dbURL,
		"HERALD_EVENT_KEYS="+eventKey,
		"HERALD_SIGNING_KEY="+signingKey,
		"HERALD_ADDR="+o.addr,
		"HERALD_TEMPORAL_ADDRESS="+o.temporal,
		"HERALD_SYSTEM_TASK_QUEUE="+o.systemQueue,
		"HERALD_MIGRATE=true",
		"HERALD_LOG_FORMAT=text",
		"HERALD_LOG_LEVEL=info",
	)
	env = append(env, o.env...)
	p, err := startProc(name, filepath.Join(dir, name+".log"), nil, env, heraldBin, "serve")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	h := &herald{proc: p, url: "http://" + o.addr}
	healthy := subproc.WaitFor(30*time.Second, 50*time.Millisecond, func() bool {
		if p.Exited() {
			return true
		}
		resp, err := http.Get(h.url + "/healthz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if !healthy || p.Exited() {
		t.Fatalf("%s did not start:\n%s", name, tail(p.LogPath, 40))
	}
	return h
}

// workerOpts configures one faultworker process.
type workerOpts struct {
	app          string
	heraldURL    string
	temporal     string
	event        string
	stepDuration time.Duration
	stepTimeout  time.Duration
	counterURL   string
	stopTimeout  time.Duration // 0: Herald's default
	ignoreCancel bool          // the step ignores the cancellation of its context
}

// startWorker starts a faultworker and waits until it has synced its app and
// polls.
func startWorker(t *testing.T, dir, name string, o workerOpts) *proc {
	t.Helper()
	p, err := startProc(name, filepath.Join(dir, name+".log"), nil, baseEnv(), workerBin,
		"-app", o.app, "-herald-url", o.heraldURL, "-signing-key", signingKey, "-temporal", o.temporal,
		"-function", functionID, "-event", o.event, "-step-duration", o.stepDuration.String(), "-step-timeout", o.stepTimeout.String(),
		"-counter-url", o.counterURL, "-stop-timeout", o.stopTimeout.String(), "-ignore-cancel="+strconv.FormatBool(o.ignoreCancel))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	if !subproc.WaitFor(60*time.Second, 50*time.Millisecond, func() bool { return p.Exited() || p.LogContains("faultworker polling") }) || p.Exited() {
		t.Fatalf("%s did not start:\n%s", name, tail(p.LogPath, 40))
	}
	return p
}

// temporalServer is a Temporal CLI dev server the test starts and stops, on
// a fixed frontend port. With a database file a restart keeps its state.
type temporalServer struct {
	dir      string
	hostPort string
	dbFile   string
	cli      string
	p        *proc
}

// newTemporalServer prepares a dev server in dir; persist keeps its state in
// a database file there (otherwise in memory, which is several times faster).
func newTemporalServer(dir string, persist bool) (*temporalServer, error) {
	cli, err := temporaltest.CLIPath()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	port, err := subproc.FreePort()
	if err != nil {
		return nil, err
	}
	s := &temporalServer{dir: dir, hostPort: "127.0.0.1:" + strconv.Itoa(port), cli: cli}
	if persist {
		s.dbFile = filepath.Join(dir, "temporal.db")
	}
	return s, nil
}

// start starts the server and waits until it answers.
func (s *temporalServer) start() error {
	_, port, _ := net.SplitHostPort(s.hostPort)
	args := []string{"server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", port,
		"--namespace", "default", "--log-level", "error",
		"--dynamic-config-value", "frontend.enableServerVersionCheck=false",
		"--dynamic-config-value", "matching.useNewMatcher=true"}
	if s.dbFile != "" {
		// No fsync per write: the file must survive the server's restart,
		// not the machine's, and with fsync a 2-core machine runs a few
		// workflows a second.
		args = append(args, "--db-filename", s.dbFile, "--sqlite-pragma", "journal_mode=WAL", "--sqlite-pragma", "synchronous=OFF")
	}
	args = append(args, temporalx.DevServerTuning...)
	for _, sa := range temporalx.SearchAttributes {
		args = append(args, "--search-attribute", sa+"=Keyword")
	}
	p, err := startProc("temporal", filepath.Join(s.dir, "temporal.log"), nil, baseEnv(), s.cli, args...)
	if err != nil {
		return err
	}
	s.p = p
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for {
		if p.Exited() {
			return fmt.Errorf("the Temporal dev server exited:\n%s", tail(p.LogPath, 30))
		}
		c, err := client.DialContext(ctx, client.Options{HostPort: s.hostPort, Namespace: "default", Logger: sdklog.NewStructuredLogger(quietLog)})
		if err == nil {
			// The namespace and Herald's search attributes are there, not
			// just the frontend.
			var sa *operatorservice.ListSearchAttributesResponse
			sa, err = c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: "default"})
			c.Close()
			if err == nil {
				if _, ok := sa.GetCustomAttributes()["HeraldApp"]; ok {
					return nil
				}
				err = errors.New("search attribute HeraldApp is not registered yet")
			}
		}
		if ctx.Err() != nil {
			p.Kill()
			return fmt.Errorf("the Temporal dev server at %s did not answer: %w", s.hostPort, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop stops the server gracefully (so its database file is consistent).
func (s *temporalServer) stop() {
	if s.p != nil {
		s.p.Stop(syscall.SIGINT, 20*time.Second)
		s.p = nil
	}
}

// client returns a lazy client of the server, closed when the test ends.
func (s *temporalServer) client(t *testing.T) client.Client {
	t.Helper()
	c, err := client.NewLazyClient(client.Options{HostPort: s.hostPort, Namespace: "default", Logger: sdklog.NewStructuredLogger(quietLog)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// pgCluster is a private PostgreSQL cluster (internal/pgcluster), on a port
// of its own, that a test may stop, start and freeze. It never touches the
// machine's shared PostgreSQL.
type pgCluster struct {
	t *testing.T
	*pgcluster.Cluster
}

// newPGCluster starts a cluster, or skips the test when this machine cannot
// run one. The cluster is removed when the test ends; its log is printed
// when the test failed.
func newPGCluster(t *testing.T) *pgCluster {
	t.Helper()
	c, err := pgcluster.Start(context.Background(), "max_connections=100")
	if errors.Is(err, pgcluster.ErrUnavailable) {
		t.Skipf("no private PostgreSQL cluster: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postgres log:\n%s", tail(c.LogPath(), 30))
		}
		c.Stop()
	})
	return &pgCluster{t: t, Cluster: c}
}

// start starts the stopped cluster again on the same port and data.
func (c *pgCluster) start() {
	c.t.Helper()
	if err := c.Restart(context.Background()); err != nil {
		c.t.Fatal(err)
	}
}

// stopImmediate stops the cluster the way a crash would: no checkpoint; the
// next start replays the WAL.
func (c *pgCluster) stopImmediate() { c.StopImmediate() }
