// Package temporaltest starts the pinned Temporal CLI dev server for
// integration tests, with Herald's search attributes. It never downloads: the
// CLI comes from HERALD_TEMPORAL_CLI or the repository's ./bin/temporal
// (installed by `make tools`).
package temporaltest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"

	"github.com/herald-run/herald/internal/temporalx"
)

// CLIPath finds the Temporal CLI.
func CLIPath() (string, error) {
	if p := os.Getenv("HERALD_TEMPORAL_CLI"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("HERALD_TEMPORAL_CLI=%s: %w", p, err)
		}
		return p, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, "bin", "temporal")
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("the Temporal CLI is not installed at %s: run 'make tools' (or set HERALD_TEMPORAL_CLI)", p)
			}
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Options adjusts a dev server.
type Options struct {
	// HostPort is the frontend address; empty picks a free port.
	HostPort string
	// DBFile persists the server's state (so a restart keeps it), with the
	// file settings herald dev uses (temporalx.DevServerFile); empty keeps it
	// in memory.
	DBFile string
	// Log receives the server's output; nil discards it.
	Log io.Writer
	// NoTuning leaves out temporalx.DevServerTuning, for measuring what it
	// buys.
	NoTuning bool
}

// Start starts a dev server and waits until it answers.
func Start(ctx context.Context, o Options) (*testsuite.DevServer, error) {
	cli, err := CLIPath()
	if err != nil {
		return nil, err
	}
	args := []string{"--dynamic-config-value", "matching.useNewMatcher=true"}
	if !o.NoTuning {
		args = append(args, temporalx.DevServerTuning...)
	}
	if o.DBFile != "" {
		args = append(args, temporalx.DevServerFile...)
	}
	for _, sa := range temporalx.SearchAttributes {
		args = append(args, "--search-attribute", sa+"=Keyword")
	}
	out := o.Log
	if out == nil {
		out = io.Discard
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath:  cli,
		ClientOptions: &client.Options{HostPort: o.HostPort, Namespace: "default", Logger: log.NewStructuredLogger(quietLogger())},
		DBFilename:    o.DBFile,
		LogLevel:      "error",
		ExtraArgs:     args,
		Stdout:        out,
		Stderr:        out,
	})
}
