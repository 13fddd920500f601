// Package pgcluster runs a private PostgreSQL cluster for Herald's fault
// tests and benchmarks: initdb into a temporary directory, the postmaster as
// a child process on a free loopback port, stock settings (autovacuum on),
// so a test can stop or freeze it without touching the machine's shared
// server, and a benchmark can measure on a server configured as production
// servers are. It needs the PostgreSQL server binaries (Debian's postgresql
// package); run as root, it runs the cluster as the postgres user.
package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/herald-run/herald/internal/subproc"
)

// ErrUnavailable wraps the reason this machine cannot run a private cluster
// (no server binaries, no postgres user to run as root); tests skip on it.
var ErrUnavailable = errors.New("pgcluster: no private PostgreSQL cluster on this machine")

// Cluster is one running private PostgreSQL cluster.
type Cluster struct {
	bin  string
	dir  string // socket directory; data lives in dir/data
	port int
	args []string
	cred *syscall.Credential
	cmd  *exec.Cmd
	done chan struct{}
}

// BinDir finds the PostgreSQL server binaries: $HERALD_PG_BIN (or, as the
// fault tests named it before, $HERALD_FAULT_PG_BIN), the newest
// /usr/lib/postgresql/*/bin, or initdb on PATH.
func BinDir() (string, error) {
	for _, env := range []string{"HERALD_PG_BIN", "HERALD_FAULT_PG_BIN"} {
		if d := os.Getenv(env); d != "" {
			return d, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(d string) int { v, _ := strconv.Atoi(filepath.Base(filepath.Dir(d))); return v }
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("%w: initdb not found in /usr/lib/postgresql/*/bin or PATH (set HERALD_PG_BIN)", ErrUnavailable)
}

// Start initializes a cluster in a new temporary directory and starts it
// with extra server settings (name=value, passed as -c), waiting until it
// accepts connections. Stop removes it.
func Start(ctx context.Context, settings ...string) (*Cluster, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin}
	if os.Geteuid() == 0 {
		// initdb refuses to run as root.
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("%w: running as root and there is no postgres user: %v", ErrUnavailable, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}
	}
	// Not under a private temp dir: the postgres user must reach it, and a
	// short path keeps the socket path under its length limit.
	if c.dir, err = os.MkdirTemp("", "herald-pg-"); err != nil {
		return nil, err
	}
	if c.cred != nil {
		if err := os.Chown(c.dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			_ = os.RemoveAll(c.dir)
			return nil, fmt.Errorf("%w: chown %s: %v", ErrUnavailable, c.dir, err)
		}
	}
	if c.port, err = subproc.FreePort(); err != nil {
		_ = os.RemoveAll(c.dir)
		return nil, err
	}
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", c.dataDir(), "-A", "trust", "-U", "postgres",
		"-E", "UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	initdb.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
	if out, err := initdb.CombinedOutput(); err != nil {
		_ = os.RemoveAll(c.dir)
		return nil, fmt.Errorf("%w: initdb: %v\n%s", ErrUnavailable, err, out)
	}
	c.args = []string{"-D", c.dataDir(), "-p", strconv.Itoa(c.port), "-k", c.dir, "-c", "listen_addresses=127.0.0.1"}
	for _, s := range settings {
		c.args = append(c.args, "-c", s)
	}
	if err := c.start(ctx); err != nil {
		_ = os.RemoveAll(c.dir)
		return nil, err
	}
	return c, nil
}

func (c *Cluster) dataDir() string { return filepath.Join(c.dir, "data") }

// DataDir is the cluster's data directory (postmaster.pid lives there).
func (c *Cluster) DataDir() string { return c.dataDir() }

// LogPath is the file the postmaster writes its log to.
func (c *Cluster) LogPath() string { return filepath.Join(c.dir, "postgres.log") }

func (c *Cluster) start(ctx context.Context) error {
	logf, err := os.OpenFile(c.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	if c.cred != nil {
		_ = logf.Chown(int(c.cred.Uid), int(c.cred.Gid))
	}
	cmd := exec.Command(filepath.Join(c.bin, "postgres"), c.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	c.cmd, c.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(c.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-c.done:
			return fmt.Errorf("pgcluster: the postmaster exited at start; see %s", filepath.Join(c.dir, "postgres.log"))
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := pgx.Connect(cctx, c.URL())
		cancel()
		if err == nil {
			_ = conn.Close(ctx)
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			c.kill()
			return fmt.Errorf("pgcluster: the cluster did not accept connections within 30s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// URL is the cluster's database URL (database postgres, user postgres).
func (c *Cluster) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

// Pid is the postmaster's process id.
func (c *Cluster) Pid() int { return c.cmd.Process.Pid }

// Stop stops the cluster at once (as a crash would) and removes its files.
func (c *Cluster) Stop() {
	if c.cmd != nil {
		c.kill()
	}
	_ = os.RemoveAll(c.dir)
}

// StopImmediate stops the cluster the way a crash would (PostgreSQL's
// immediate shutdown: no checkpoint, the next start replays the WAL) and
// keeps its files, for Restart.
func (c *Cluster) StopImmediate() {
	c.kill()
	c.cmd = nil
}

// Restart starts a stopped cluster again, on the same port and data, and
// waits until it accepts connections.
func (c *Cluster) Restart(ctx context.Context) error { return c.start(ctx) }

func (c *Cluster) kill() {
	// The postmaster and its backends share its process group.
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGQUIT)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.done
	}
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
}
