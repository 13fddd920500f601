package prodtest

import (
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/herald-run/herald/internal/subproc"
)

// Proc is a subprocess of the topology (see package subproc).
type Proc = subproc.Proc

// startProc starts bin with args and env, appending its output to logPath.
func startProc(name, logPath string, env []string, bin string, args ...string) (*Proc, error) {
	return subproc.Start(name, logPath, nil, env, bin, args...)
}

// Tail returns the last n lines of the file at path.
func Tail(path string, n int) string { return subproc.Tail(path, n) }

// httpOK reports whether GET url answers 200.
func httpOK(url string) bool {
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(url)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// baseEnv is the environment without Herald's and Temporal's configuration
// variables, so a developer's shell settings never leak into the processes.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "HERALD_") || strings.HasPrefix(kv, "TEMPORAL_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}
