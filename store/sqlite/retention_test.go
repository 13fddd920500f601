package sqlite

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The purge statements find their rows through the age indexes of migration
// 008 and delete by key: a batch never scans events, runs or their links.
func TestPurgeUsesIndexes(t *testing.T) {
	t.Parallel()
	plan := queryPlanner(t)
	noScan := func(p string, tables ...string) {
		t.Helper()
		require.NotContains(t, p, "TEMP B-TREE", "a sort:\n%s", p)
		for _, table := range tables {
			for _, line := range strings.Split(p, "\n") {
				require.False(t, strings.HasPrefix(line, "SCAN "+table+" ") || line == "SCAN "+table, "scans %s:\n%s", table, p)
			}
		}
	}
	cutoff := time.Now().UnixMilli()

	p := plan(purgeEventsSQL, cutoff, 1000)
	require.Contains(t, p, "USING INDEX events_dispatched_received_idx (received_at<?)", p)
	require.Contains(t, p, "USING INDEX runs_event_idx (event_id=?)", p)
	require.Contains(t, p, "sqlite_autoindex_run_events_1 (event_id=?)", p) // its primary key
	noScan(p, "events", "e", "runs", "r", "run_events", "l")

	p = plan(purgeRunsSQL, cutoff, 1000)
	require.Contains(t, p, "USING INDEX runs_ended_idx (ended_at<?)", p)
	noScan(p, "runs")
	p = plan(purgeRunLinksSQL, `["r1","r2"]`)
	require.Contains(t, p, "run_events_run_idx (run_id=?)", p)
	noScan(p, "run_events")

	p = plan(purgeCancellationsSQL, cutoff, 1000)
	require.Contains(t, p, "USING INDEX cancellations_finished_idx (updated_at<?)", p)
	noScan(p, "cancellations")
}
