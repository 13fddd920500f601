package prodtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/herald-run/herald/internal/subproc"
	"github.com/jackc/pgx/v5"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TemporalVersion is the Temporal server release the topology runs: the
// release of the dev server Herald's other tests use.
const TemporalVersion = "v1.29.1"

// Keys and names every process of the topology shares.
const (
	EventKey    = "prod-event-key"
	SigningKey  = "prod-signing-key"
	Namespace   = "default"
	SystemQueue = "herald-system-prod"
)

// Binaries are the programs the topology runs.
type Binaries struct {
	Herald         string // cmd/herald
	Demo           string // examples/demo, the example worker
	TemporalServer string // go.temporal.io/server/cmd/server
	SQLTool        string // go.temporal.io/server/cmd/tools/sql
}

// Options configure a topology.
type Options struct {
	Bins Binaries
	// Dir holds the processes' logs.
	Dir string
	// RepoRoot is the repository's root: deploy/temporal is read from it.
	RepoRoot string
	// DatabaseURL is a PostgreSQL URL of a role that may create databases
	// (HERALD_TEST_DATABASE_URL). The topology creates its three databases
	// next to that one, named herald_prod_*, and drops them on Stop.
	DatabaseURL string
	// SchemaDir is Temporal's schema/postgresql/v12 directory (in the module
	// cache); empty: found with `go env GOMODCACHE`.
	SchemaDir string
	// Replicas is the number of `herald serve` replicas (default 2).
	Replicas int
	// Progress receives one line per step (default: discarded).
	Progress io.Writer
}

// Topology is Herald's production topology as processes on loopback: a
// Temporal server on PostgreSQL persistence and visibility, Herald's
// replicas on one database, a load balancer in front of them and the
// example worker behind it.
type Topology struct {
	o Options

	// Temporal is the server's frontend address.
	Temporal string
	// HeraldDB is the URL of Herald's database; TemporalDB and VisibilityDB
	// are the names of Temporal's databases.
	HeraldDB                 string
	TemporalDB, VisibilityDB string
	Replicas                 []*Replica
	LB                       *Balancer
	Worker                   *Proc

	temporal    *Proc
	temporalEnv []string
	admin       string // URL of the database the test connects to
	pgUser      string
	pgPassword  string
	pgHost      string
	pgPort      string
	created     []string
}

// Replica is one `herald serve`.
type Replica struct {
	*Proc
	Addr string // 127.0.0.1:port
	URL  string // http://Addr
	n    int
}

func (t *Topology) progress(format string, args ...any) {
	if t.o.Progress != nil {
		fmt.Fprintf(t.o.Progress, "prodtest: "+format+"\n", args...)
	}
}

// Start builds the topology step by step: databases, Temporal's schemas, the
// Temporal server, the namespace, `herald migrate`, the replicas, the load
// balancer and the example worker. On error, what was started is stopped.
func Start(ctx context.Context, o Options) (*Topology, error) {
	if o.Replicas == 0 {
		o.Replicas = 2
	}
	t := &Topology{o: o, admin: o.DatabaseURL}
	if err := t.start(ctx); err != nil {
		t.Stop()
		return nil, err
	}
	return t, nil
}

func (t *Topology) start(ctx context.Context) (err error) {
	o := t.o
	if err := t.parseDatabaseURL(); err != nil {
		return err
	}
	if t.o.SchemaDir == "" {
		if t.o.SchemaDir, err = SchemaDir(); err != nil {
			return err
		}
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	prefix := fmt.Sprintf("herald_prod_%d_%s", os.Getpid(), hex.EncodeToString(b[:]))
	t.TemporalDB, t.VisibilityDB = prefix+"_temporal", prefix+"_visibility"

	step := time.Now()
	t.dropLeftovers(ctx)
	if err := t.createHeraldDB(ctx, prefix+"_herald"); err != nil {
		return err
	}
	if err := t.setupTemporalSchemas(ctx); err != nil {
		return err
	}
	t.progress("databases %s, %s (Temporal schemas set up with the SQL tool) and %s_herald in %s",
		t.TemporalDB, t.VisibilityDB, prefix, time.Since(step).Round(100*time.Millisecond))

	step = time.Now()
	if err := t.prepareTemporal(); err != nil {
		return err
	}
	if err := t.StartTemporal(ctx); err != nil {
		return err
	}
	if err := t.registerNamespace(ctx); err != nil {
		return err
	}
	t.progress("Temporal server %s up at %s with namespace %q in %s", TemporalVersion, t.Temporal, Namespace, time.Since(step).Round(100*time.Millisecond))

	step = time.Now()
	if err := t.migrate(ctx); err != nil {
		return err
	}
	t.progress("herald migrate: database migrated, search attributes registered, in %s", time.Since(step).Round(100*time.Millisecond))

	step = time.Now()
	t.LB = NewBalancer()
	for i := range o.Replicas {
		port, err := subproc.FreePort()
		if err != nil {
			return err
		}
		r := &Replica{Addr: "127.0.0.1:" + strconv.Itoa(port), n: i}
		r.URL = "http://" + r.Addr
		if err := t.StartReplica(r); err != nil {
			return err
		}
		t.Replicas = append(t.Replicas, r)
		t.LB.Add(r.URL)
	}
	if err := t.LB.Start(); err != nil {
		return err
	}
	t.progress("%d herald serve replicas on one database behind the balancer at %s in %s", len(t.Replicas), t.LB.URL, time.Since(step).Round(100*time.Millisecond))

	step = time.Now()
	if err := t.startWorker(); err != nil {
		return err
	}
	t.progress("the example worker synced the demo app through the balancer in %s", time.Since(step).Round(100*time.Millisecond))
	return nil
}

// SchemaDir finds Temporal's PostgreSQL schema files in the module cache.
func SchemaDir() (string, error) {
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMODCACHE: %w", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "go.temporal.io", "server@"+TemporalVersion, "schema", "postgresql", "v12")
	if _, err := os.Stat(filepath.Join(dir, "temporal", "versioned")); err != nil {
		return "", fmt.Errorf("the schema files of Temporal %s are not in the module cache (%v): `make prodtest` downloads them with the server", TemporalVersion, err)
	}
	return dir, nil
}

func (t *Topology) parseDatabaseURL() error {
	u, err := url.Parse(t.admin)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return fmt.Errorf("database URL %q is not a postgres:// URL", t.admin)
	}
	t.pgHost, t.pgPort = u.Hostname(), u.Port()
	if t.pgHost == "" {
		t.pgHost = "127.0.0.1"
	}
	if t.pgPort == "" {
		t.pgPort = "5432"
	}
	t.pgUser = u.User.Username()
	t.pgPassword, _ = u.User.Password()
	if t.pgUser == "" {
		// What libpq and pgx use without a user: the OS user's name.
		if cur, err := user.Current(); err == nil {
			t.pgUser = cur.Username
		}
	}
	return nil
}

// dbURL is the admin URL with another database.
func (t *Topology) dbURL(name string) string {
	u, _ := url.Parse(t.admin)
	u.Path = "/" + name
	q := u.Query()
	q.Del("search_path")
	u.RawQuery = q.Encode()
	return u.String()
}

// DBURL returns the URL of one of the topology's databases.
func (t *Topology) DBURL(name string) string { return t.dbURL(name) }

func (t *Topology) exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, t.admin)
	if err != nil {
		return fmt.Errorf("PostgreSQL at %s: %w", t.admin, err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// dropLeftovers drops the databases of earlier runs whose process is gone
// (a run killed before its cleanup): their names carry the process id.
func (t *Topology) dropLeftovers(ctx context.Context) {
	conn, err := pgx.Connect(ctx, t.admin)
	if err != nil {
		return
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE datname LIKE 'herald\_prod\_%'`)
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	for _, name := range names {
		parts := strings.Split(name, "_")
		if len(parts) < 4 {
			continue
		}
		pid, err := strconv.Atoi(parts[2])
		if err != nil {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // its run may still be going
		}
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err == nil {
			t.progress("dropped %s, left over by an earlier run", name)
		}
	}
}

func (t *Topology) createHeraldDB(ctx context.Context, name string) error {
	if err := t.exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	t.created = append(t.created, name)
	t.HeraldDB = t.dbURL(name)
	return nil
}

// setupTemporalSchemas runs what docker-compose.yml's temporal-schema job
// runs, with the SQL tool built from the same release as the server.
func (t *Topology) setupTemporalSchemas(ctx context.Context) error {
	for _, db := range []struct{ name, dir string }{{t.TemporalDB, "temporal"}, {t.VisibilityDB, "visibility"}} {
		base := []string{"--plugin", "postgres12", "--ep", t.pgHost, "-p", t.pgPort, "-u", t.pgUser, "--db", db.name}
		if t.pgPassword != "" {
			base = append(base, "--pw", t.pgPassword)
		}
		for i, args := range [][]string{
			{"create-database"},
			{"setup-schema", "-v", "0.0"},
			{"update-schema", "-d", filepath.Join(t.o.SchemaDir, db.dir, "versioned")},
		} {
			cmd := exec.CommandContext(ctx, t.o.Bins.SQLTool, append(append([]string{}, base...), args...)...)
			cmd.Env = baseEnv()
			out, err := cmd.CombinedOutput()
			if i == 0 && err == nil {
				t.created = append(t.created, db.name)
			}
			if err != nil {
				return fmt.Errorf("temporal-sql-tool %s on %s: %v\n%s", args[0], db.name, err, out)
			}
		}
	}
	return nil
}

// prepareTemporal chooses the server's ports and writes its environment:
// the variables deploy/temporal/config/herald.yaml reads.
func (t *Topology) prepareTemporal() error {
	// Temporal keeps membership ports in a smallint column: ports below
	// 32768, outside the kernel's ephemeral range that FreePort draws from.
	ports := map[string]int{}
	taken := map[int]bool{}
	for _, name := range []string{
		"FRONTEND_GRPC_PORT", "FRONTEND_HTTP_PORT", "FRONTEND_MEMBERSHIP_PORT",
		"HISTORY_GRPC_PORT", "HISTORY_MEMBERSHIP_PORT",
		"MATCHING_GRPC_PORT", "MATCHING_MEMBERSHIP_PORT",
		"WORKER_GRPC_PORT", "WORKER_MEMBERSHIP_PORT",
	} {
		p, err := freeLowPort(taken)
		if err != nil {
			return err
		}
		ports[name], taken[p] = p, true
	}
	env := append(baseEnv(),
		"DB=postgres12",
		"POSTGRES_SEEDS="+t.pgHost,
		"DB_PORT="+t.pgPort,
		"POSTGRES_USER="+t.pgUser,
		"POSTGRES_PWD="+t.pgPassword,
		"DBNAME="+t.TemporalDB,
		"VISIBILITY_DBNAME="+t.VisibilityDB,
		"BIND_ON_IP=127.0.0.1",
		"TEMPORAL_BROADCAST_ADDRESS=127.0.0.1",
		"LOG_LEVEL=warn",
		"DYNAMIC_CONFIG_FILE_PATH="+filepath.Join(t.o.RepoRoot, "deploy", "temporal", "dynamicconfig", "herald.yaml"),
	)
	for name, p := range ports {
		env = append(env, name+"="+strconv.Itoa(p))
	}
	t.temporalEnv = env
	t.Temporal = "127.0.0.1:" + strconv.Itoa(ports["FRONTEND_GRPC_PORT"])
	return nil
}

// freeLowPort returns a free loopback port in [20000, 32000) not in taken.
func freeLowPort(taken map[int]bool) (int, error) {
	for range 200 {
		n, err := rand.Int(rand.Reader, big.NewInt(12000))
		if err != nil {
			return 0, err
		}
		p := 20000 + int(n.Int64())
		if taken[p] {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		_ = ln.Close()
		return p, nil
	}
	return 0, errors.New("no free port in [20000, 32000) on 127.0.0.1")
}

// StartTemporal starts the Temporal server (again, after KillTemporal, on
// the same ports and databases) and waits until its frontend is healthy.
func (t *Topology) StartTemporal(ctx context.Context) error {
	configDir := filepath.Join(t.o.RepoRoot, "deploy", "temporal", "config")
	p, err := startProc("temporal", filepath.Join(t.o.Dir, "temporal.log"), t.temporalEnv, t.o.Bins.TemporalServer,
		"--root", "/", "--config", configDir, "--env", "herald", "--allow-no-auth", "start")
	if err != nil {
		return err
	}
	t.temporal = p
	c, err := client.NewLazyClient(client.Options{HostPort: t.Temporal, Namespace: Namespace, Logger: quietLogger})
	if err != nil {
		return err
	}
	defer c.Close()
	var lastErr error
	ok := subproc.WaitFor(2*time.Minute, 200*time.Millisecond, func() bool {
		if p.Exited() {
			return true
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, lastErr = c.CheckHealth(cctx, &client.CheckHealthRequest{})
		return lastErr == nil
	})
	if p.Exited() {
		return fmt.Errorf("the Temporal server exited:\n%s", p.Tail(40))
	}
	if !ok {
		return fmt.Errorf("the Temporal server at %s is not healthy after 2 minutes: %v\n%s", t.Temporal, lastErr, p.Tail(40))
	}
	return nil
}

// KillTemporal SIGKILLs the Temporal server: a crash, no graceful shutdown.
func (t *Topology) KillTemporal() {
	if t.temporal != nil {
		t.temporal.Kill()
	}
}

// TemporalProc is the running Temporal server.
func (t *Topology) TemporalProc() *Proc { return t.temporal }

var quietLogger = sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))

// registerNamespace creates the namespace Herald uses, as the compose
// file's temporal-namespace job does: a fresh cluster has none.
func (t *Topology) registerNamespace(ctx context.Context) error {
	nc, err := client.NewNamespaceClient(client.Options{HostPort: t.Temporal, Logger: quietLogger})
	if err != nil {
		return err
	}
	defer nc.Close()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = nc.Register(rctx, &workflowservice.RegisterNamespaceRequest{
		Namespace:                        Namespace,
		WorkflowExecutionRetentionPeriod: durationpb.New(24 * time.Hour),
	})
	var exists *serviceerror.NamespaceAlreadyExists
	if err != nil && !errors.As(err, &exists) {
		return fmt.Errorf("register namespace %q: %w", Namespace, err)
	}
	// A new namespace reaches every frontend's cache within seconds.
	var lastErr error
	if !subproc.WaitFor(30*time.Second, 200*time.Millisecond, func() bool {
		_, lastErr = nc.Describe(rctx, Namespace)
		return lastErr == nil
	}) {
		return fmt.Errorf("namespace %q not visible: %w", Namespace, lastErr)
	}
	return nil
}

// heraldEnv is the environment of `herald migrate` and `herald serve`.
func (t *Topology) heraldEnv(extra ...string) []string {
	return append(append(baseEnv(),
		"HERALD_DATABASE_URL="+t.HeraldDB,
		"HERALD_TEMPORAL_ADDRESS="+t.Temporal,
		"HERALD_TEMPORAL_NAMESPACE="+Namespace,
		"HERALD_EVENT_KEYS="+EventKey,
		"HERALD_SIGNING_KEY="+SigningKey,
		"HERALD_SYSTEM_TASK_QUEUE="+SystemQueue,
		"HERALD_LOG_FORMAT=text",
		"HERALD_LOG_LEVEL=info",
	), extra...)
}

// migrate runs `herald migrate`, retried a few times as compose's
// herald-migrate job is: a new namespace may not be visible everywhere yet.
func (t *Topology) migrate(ctx context.Context) error {
	var out []byte
	var err error
	for range 5 {
		cmd := exec.CommandContext(ctx, t.o.Bins.Herald, "migrate")
		cmd.Env = t.heraldEnv()
		out, err = cmd.CombinedOutput()
		if err == nil {
			return os.WriteFile(filepath.Join(t.o.Dir, "herald-migrate.log"), out, 0o644)
		}
		time.Sleep(2 * time.Second)
	}
	return fmt.Errorf("herald migrate: %v\n%s", err, out)
}

// StartReplica starts `herald serve` for r (again, after a kill, on the same
// address) and waits until /healthz answers.
func (t *Topology) StartReplica(r *Replica) error {
	p, err := startProc(fmt.Sprintf("herald-%d", r.n), filepath.Join(t.o.Dir, fmt.Sprintf("herald-%d.log", r.n)),
		t.heraldEnv("HERALD_ADDR="+r.Addr), t.o.Bins.Herald, "serve")
	if err != nil {
		return err
	}
	r.Proc = p
	if !subproc.WaitFor(30*time.Second, 50*time.Millisecond, func() bool { return p.Exited() || httpOK(r.URL+"/healthz") }) || p.Exited() {
		return fmt.Errorf("%s did not start:\n%s", p.Name, p.Tail(40))
	}
	return nil
}

// startWorker starts the example worker against the balancer and waits
// until its app is synced.
func (t *Topology) startWorker() error {
	p, err := startProc("worker", filepath.Join(t.o.Dir, "worker.log"), append(baseEnv(),
		"HERALD_URL="+t.LB.URL,
		"HERALD_SIGNING_KEY="+SigningKey,
		"TEMPORAL_ADDRESS="+t.Temporal,
		"TEMPORAL_NAMESPACE="+Namespace,
	), t.o.Bins.Demo)
	if err != nil {
		return err
	}
	t.Worker = p
	c := NewAPI(t.LB.URL)
	var fns []string
	if !subproc.WaitFor(60*time.Second, 200*time.Millisecond, func() bool {
		if p.Exited() {
			return true
		}
		fns, _ = c.Functions()
		return len(fns) > 0
	}) || p.Exited() {
		return fmt.Errorf("the example worker did not sync its app:\n%s", p.Tail(40))
	}
	time.Sleep(time.Second) // and polls its task queues
	return nil
}

// Stop stops every process (the worker first, Temporal last) and drops the
// databases the topology created.
func (t *Topology) Stop() {
	if t.Worker != nil {
		t.Worker.Stop(syscall.SIGTERM, 10*time.Second)
	}
	if t.LB != nil {
		t.LB.Close()
	}
	for _, r := range t.Replicas {
		if r.Proc != nil {
			r.Stop(syscall.SIGTERM, 10*time.Second)
		}
	}
	if t.temporal != nil {
		t.temporal.Stop(syscall.SIGTERM, 20*time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, name := range t.created {
		if err := t.exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.progress("drop database %s: %v", name, err)
		}
	}
	if len(t.created) > 0 {
		t.progress("dropped databases %s", strings.Join(t.created, ", "))
	}
	t.created = nil
}
