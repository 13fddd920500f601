package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The lookups that must stay cheap with many waits and events use their
// indexes.
func TestWaitQueriesUseIndexes(t *testing.T) {
	t.Parallel()
	plan := queryPlanner(t)
	now := time.Now().UnixMilli()
	require.Contains(t, plan(`SELECT `+waitColumns+` FROM waits
		WHERE event_name = ? AND match_path = ? AND match_value = ? AND resolved_at IS NULL AND expires_at > ?`,
		"a", "data.id", "1", now), "USING INDEX waits_pending_key_idx (event_name=? AND match_path=? AND match_value=?)")
	require.Contains(t, plan(`SELECT `+eventColumns+` FROM events
		WHERE name = ? AND received_at >= ? ORDER BY received_at, seq LIMIT ?`, "a", now, 10),
		"USING INDEX events_name_received_idx (name=? AND received_at>?)")
	// The UNIQUE (workflow_id, kind, step_id) index.
	del := plan(`DELETE FROM waits WHERE workflow_id = ?`, "wf")
	require.Contains(t, del, "(workflow_id=?)")
	require.NotContains(t, del, "SCAN")
}

// queryPlanner opens a migrated database and returns a function that gives
// SQLite's query plan of a statement, one detail a line.
func queryPlanner(t *testing.T) func(query string, args ...any) string {
	t.Helper()
	ctx := context.Background()
	d, err := Open(ctx, filepath.Join(t.TempDir(), "herald.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	require.NoError(t, d.Migrate(ctx))
	return func(query string, args ...any) string {
		t.Helper()
		rows, err := d.db.QueryContext(ctx, `EXPLAIN QUERY PLAN `+query, args...)
		require.NoError(t, err)
		defer rows.Close()
		var lines []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			require.NoError(t, rows.Scan(&id, &parent, &unused, &detail))
			lines = append(lines, detail)
		}
		require.NoError(t, rows.Err())
		return strings.Join(lines, "\n")
	}
}
