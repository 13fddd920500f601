package fault

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herald-run/herald/ingest"
	"github.com/herald-run/herald/internal/faultload"
	"github.com/herald-run/herald/internal/subproc"
)

// procStat returns the state and parent pid of process pid, from
// /proc/<pid>/stat ("pid (comm) state ppid ...", comm may hold spaces and
// parentheses).
func procStat(pid int) (state byte, ppid int, err error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, raw)
	}
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, raw)
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0][0], ppid, err
}

// children returns the pids of parent's child processes.
func children(parent int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid, err := procStat(pid); err == nil && ppid == parent {
			out = append(out, pid)
		}
	}
	return out
}

// postmasterPID reads the postmaster's pid from the cluster's data
// directory (the first line of postmaster.pid).
func (c *pgCluster) postmasterPID() (int, error) {
	raw, err := os.ReadFile(filepath.Join(c.DataDir(), "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	return strconv.Atoi(strings.TrimSpace(line))
}

// freeze stops every process of the cluster with SIGSTOP, the way a stuck
// disk, a paused VM or a long GC pause of the database host would: the
// postmaster first (so it forks no new backend), then each of its children
// (backends and auxiliary processes), until all of them are stopped. It
// returns the function that resumes them, which the test's cleanup also
// calls.
func (c *pgCluster) freeze() (thaw func()) {
	t := c.t
	t.Helper()
	pm, err := c.postmasterPID()
	if err != nil {
		t.Fatalf("freeze: %v", err)
	}
	if pm != c.Pid() {
		t.Fatalf("freeze: postmaster.pid says %d, the test started %d", pm, c.Pid())
	}
	stopped := map[int]bool{}
	var order []int
	resumed := false
	thaw = func() {
		if resumed {
			return
		}
		resumed = true
		// Children first: the postmaster, resumed last, finds them running.
		for i := len(order) - 1; i >= 0; i-- {
			_ = syscall.Kill(order[i], syscall.SIGCONT)
		}
	}
	t.Cleanup(thaw)
	stop := func(pid int) {
		if !stopped[pid] {
			if err := syscall.Kill(pid, syscall.SIGSTOP); err == nil {
				stopped[pid] = true
				order = append(order, pid)
			}
		}
	}
	stop(pm)
	// Until every child is stopped: a backend forked just before the
	// postmaster stopped shows up in a second look.
	ok := subproc.WaitFor(5*time.Second, 10*time.Millisecond, func() bool {
		all := true
		for _, pid := range append([]int{pm}, children(pm)...) {
			stop(pid)
			if st, _, err := procStat(pid); err == nil && st != 'T' && st != 't' {
				all = false
			}
		}
		return all
	})
	if !ok {
		thaw()
		t.Fatalf("freeze: the cluster's processes did not all stop")
	}
	t.Logf("froze PostgreSQL: the postmaster %d and %d children", pm, len(order)-1)
	return thaw
}

// TestPostgresFrozen freezes the private PostgreSQL cluster (every process
// SIGSTOPped: it accepts TCP connections and answers nothing) for a few
// seconds under load. Ingest must not hang with it: every request during the
// freeze is answered 503 within the commit timeout (2 s, from its arrival,
// queueing included), /readyz reports the store unavailable, and once the
// cluster resumes, requests get 200 again by themselves. Nothing
// acknowledged is lost, nothing runs twice.
func TestPostgresFrozen(t *testing.T) {
	s := newScenario(t, "postgres-frozen")
	pg := newPGCluster(t)
	ts := sharedTemporal(t)
	tc := ts.client(t)
	h := s.herald("herald", heraldOpts{addr: freeAddr(t), dbURL: pg.URL(), temporal: ts.hostPort})
	s.worker("worker", h.url, ts.hostPort, quickSteps)

	var (
		before = pick(2*time.Second, 5*time.Second)
		freeze = pick(5*time.Second, 20*time.Second)
		after  = pick(2*time.Second, 5*time.Second)
		// The bound: the commit timeout, with a margin for the HTTP round
		// trip and scheduling on a loaded 2-core machine.
		maxLatency = ingest.DefaultCommitTimeout + 500*time.Millisecond
	)
	load := s.sendLoad([]string{h.url}, false, pick(40*time.Millisecond, 25*time.Millisecond))
	start := time.Now()
	sleepUntil(start.Add(before))
	thaw := pg.freeze()
	frozen := time.Now()
	t.Logf("PostgreSQL frozen at %s", frozen.Sub(start).Round(time.Millisecond))

	ready := pollReady(h.url, frozen.Add(freeze))
	thaw()
	thawed := time.Now()
	t.Logf("PostgreSQL resumed at %s (frozen %s)", thawed.Sub(start).Round(time.Millisecond), thawed.Sub(frozen).Round(time.Millisecond))
	requireRecovery(t, load, thawed, "PostgreSQL resumed")
	time.Sleep(after)
	load.Stop()

	requireStoreUnready(t, ready, "the freeze")
	reqs := load.Requests()
	during := faultload.Between(reqs, frozen, thawed)
	t.Logf("requests: %d, %d during the freeze; during it by status: %v; all by status: %v", len(reqs), len(during), faultload.StatusCounts(during), faultload.StatusCounts(reqs))
	if len(during) == 0 {
		t.Errorf("no request during the freeze")
	}
	var slowest503 time.Duration
	n503 := 0
	for _, r := range during {
		finished := r.Start.Add(r.Latency)
		if r.Status == http.StatusServiceUnavailable {
			n503++
			slowest503 = max(slowest503, r.Latency)
		}
		switch {
		case r.Latency > maxLatency:
			t.Errorf("request at %s during the freeze took %s (status %d %s), want at most %s", r.Start.Sub(start).Round(time.Millisecond), r.Latency.Round(time.Millisecond), r.Status, r.Err, maxLatency)
		case finished.Before(thawed) && r.Status != http.StatusServiceUnavailable:
			t.Errorf("request at %s during the freeze: status %d, want 503 (%s)", r.Start.Sub(start).Round(time.Millisecond), r.Status, r.Err)
		}
	}
	line := fmt.Sprintf("fault: %s: %d requests during the %s freeze, %d answered 503, the slowest 503 in %s (commit timeout %s)",
		s.name, len(during), thawed.Sub(frozen).Round(100*time.Millisecond), n503, slowest503.Round(time.Millisecond), ingest.DefaultCommitTimeout)
	t.Log(line)
	fmt.Println(line)
	check(t, checkOpts{scenario: s.name, dbURL: pg.URL(), temporal: tc, app: s.app, event: s.event, load: load, wait: pick(90*time.Second, 300*time.Second)})
}
