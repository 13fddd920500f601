package benchtool

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseStat(t *testing.T) {
	// A command name with a space and a parenthesis: the fields are
	// counted from the last ')'.
	raw := []byte("4242 (we(ird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 37 3 4 20 0 12 0 500 1000 200 18446744073709551615\n")
	comm, cpu, ok := parseStat(raw)
	require.True(t, ok)
	require.Equal(t, "we(ird) name", comm)
	require.Equal(t, 294*10*time.Millisecond, cpu) // utime 250, stime 37, and the waited-for children's 3 and 4 ticks

	for _, bad := range []string{"", "4242 comm S 1", "4242 (x) S 1 2 3", "4242 (x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 37 3", "4242 (x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 37 3 x"} {
		_, _, ok := parseStat([]byte(bad))
		require.False(t, ok, "%q", bad)
	}
}

func TestProcessAndCommandCPU(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc on this system")
	}
	// Burn some CPU so this process has used at least a tick.
	deadline := time.Now().Add(50 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = x * x
	}
	own := ProcessCPU(os.Getpid())
	require.Positive(t, own)
	require.Zero(t, ProcessCPU(-1))

	comm, err := os.ReadFile("/proc/self/comm")
	require.NoError(t, err)
	name := string(comm[:len(comm)-1])
	// Every process of this test binary's name, this one included.
	require.GreaterOrEqual(t, CommandCPU(name), own)
	require.Zero(t, CommandCPU(filepath.Base(t.TempDir())+"-no-such-command"))
}

func TestPerItem(t *testing.T) {
	require.InDelta(t, 36.0, PerItem(360*time.Millisecond, 10_000), 1e-9)
	require.Zero(t, PerItem(time.Second, 0))
}
