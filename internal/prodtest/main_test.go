package prodtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/herald-run/herald/internal/testdb"
)

// topo is the topology every test of the package runs against; the tests
// run one after another (no t.Parallel) because the fault tests kill its
// processes.
var (
	topo        *Topology
	faultWorker string // internal/fault/faultworker, the fault scenarios' worker
)

func TestMain(m *testing.M) {
	if on, _ := strconv.ParseBool(os.Getenv("HERALD_PRODTEST")); !on {
		fmt.Println("prodtest: skipped: the production topology runs under `make prodtest` (HERALD_PRODTEST=1, with the Temporal server built into ./bin)")
		os.Exit(0)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	start := time.Now()
	dir, err := os.MkdirTemp("", "herald-prodtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "prodtest:", err)
		return 1
	}
	keep, _ := strconv.ParseBool(os.Getenv("HERALD_PRODTEST_KEEP_LOGS"))
	defer func() {
		if keep {
			fmt.Println("prodtest: logs kept in", dir)
			return
		}
		_ = os.RemoveAll(dir)
	}()
	bins, err := buildForTest(filepath.Join(dir, "bin"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "prodtest:", err)
		return 1
	}
	root, _ := filepath.Abs("../..")
	topo, err = Start(context.Background(), Options{
		Bins: bins, Dir: dir, RepoRoot: root, DatabaseURL: testdb.BaseURL(),
		SchemaDir: os.Getenv("HERALD_TEMPORAL_SCHEMA_DIR"), Progress: os.Stdout,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "prodtest:", err)
		return 1
	}
	fmt.Printf("prodtest: topology up %s after the start\n", time.Since(start).Round(100*time.Millisecond))
	code := m.Run()
	if code != 0 {
		for _, p := range []string{"temporal.log", "herald-0.log", "herald-1.log", "worker.log"} {
			fmt.Printf("--- tail of %s:\n%s\n", p, Tail(filepath.Join(dir, p), 40))
		}
	}
	topo.Stop()
	fmt.Printf("prodtest: done in %s\n", time.Since(start).Round(100*time.Millisecond))
	return code
}

// buildForTest builds Herald, the example worker and the fault worker into
// dir with one go build, and finds the Temporal server and its SQL tool.
func buildForTest(dir string) (Binaries, error) {
	b := Binaries{
		Herald:         filepath.Join(dir, "herald"),
		Demo:           filepath.Join(dir, "demo"),
		TemporalServer: os.Getenv("HERALD_TEMPORAL_SERVER"),
		SQLTool:        os.Getenv("HERALD_TEMPORAL_SQL_TOOL"),
	}
	if b.TemporalServer == "" {
		b.TemporalServer, _ = filepath.Abs("../../bin/temporal-server")
	}
	if b.SQLTool == "" {
		b.SQLTool, _ = filepath.Abs("../../bin/temporal-sql-tool")
	}
	for _, p := range []string{b.TemporalServer, b.SQLTool} {
		if _, err := os.Stat(p); err != nil {
			return b, fmt.Errorf("%v: `make prodtest` builds the Temporal server and its SQL tool into ./bin", err)
		}
	}
	start := time.Now()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return b, err
	}
	cmd := exec.Command("go", "build", "-ldflags=-s -w", "-o", dir+string(filepath.Separator),
		"github.com/herald-run/herald/cmd/herald",
		"github.com/herald-run/herald/examples/demo",
		"github.com/herald-run/herald/internal/fault/faultworker")
	if out, err := cmd.CombinedOutput(); err != nil {
		return b, fmt.Errorf("go build: %v\n%s", err, out)
	}
	faultWorker = filepath.Join(dir, "faultworker")
	fmt.Printf("prodtest: built herald, the example worker and the fault worker in %s\n", time.Since(start).Round(100*time.Millisecond))
	return b, nil
}
