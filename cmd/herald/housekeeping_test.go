package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// A retention below 48h would let an event be purged inside its 24-hour
// deduplication window: serve and dev refuse it, from a flag or the
// environment, before they touch anything.
func TestRetentionFlags(t *testing.T) {
	ctx := context.Background()
	r := runCLI(t, ctx, "serve", "--database-url", "nope://x", "--insecure", "--retention", "24h")
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "--retention 24h0m0s is too short: the minimum is 48h0m0s")
	require.Contains(t, r.stderr, "Usage: herald serve", "a usage error prints the help")

	// 48h is accepted: serve goes on to the next check, the database URL.
	r = runCLI(t, ctx, "serve", "--database-url", "nope://x", "--insecure", "--retention", "48h")
	require.Equal(t, 2, r.code, r.stderr)
	require.NotContains(t, r.stderr, "too short")
	require.Contains(t, r.stderr, `unsupported database URL "nope://x"`)

	for _, c := range []struct{ env, value, want string }{
		{"HERALD_RETENTION", "47h59m", "--retention 47h59m0s is too short"},
		{"HERALD_HOUSEKEEPING_INTERVAL", "10ms", "--housekeeping-interval 10ms is too short"},
		{"HERALD_JOB_STALE_AFTER", "500ms", "--job-stale-after 500ms is too short"},
	} {
		t.Run(c.env, func(t *testing.T) {
			t.Setenv(c.env, c.value)
			r := runCLI(t, ctx, "dev", "--data-dir", t.TempDir())
			require.Equal(t, 2, r.code, r.stderr)
			require.Contains(t, r.stderr, c.want)
		})
	}

	for _, cmd := range []string{"serve", "dev"} {
		h := runCLI(t, ctx, cmd, "--help")
		require.Equal(t, 0, h.code)
		require.Contains(t, h.stderr, `(default "720h0m0s") [$HERALD_RETENTION]`)
		require.Contains(t, h.stderr, `(default "15s") [$HERALD_HOUSEKEEPING_INTERVAL]`)
		require.Contains(t, h.stderr, `(default "30s") [$HERALD_JOB_STALE_AFTER]`)
	}
}
