package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-run/herald/store"
)

// BenchWaitKey returns the key of the i-th wait LoadWaitsForBench loads for
// eventName, so a benchmark can look up waits that exist.
func BenchWaitKey(eventName string, i int) store.WaitKey {
	return store.WaitKey{EventName: eventName, MatchPath: "data.userId", MatchValue: fmt.Sprintf(`"u_%09d"`, i)}
}

// LoadWaitsForBench fills the waits table of the database behind pool with n
// pending, indexable waits awaiting eventName, wait i under BenchWaitKey(eventName, i),
// expiring in a day, then analyzes the table so plans are those of a steady
// state. It uses COPY; a million waits take about half a minute on two cores,
// most of it index maintenance and WAL on the server. It is for benchmarks
// (`go test -bench`, `make bench`) on a migrated, disposable database; the
// waits it loads for one eventName must not exist yet.
func LoadWaitsForBench(ctx context.Context, pool *pgxpool.Pool, n int, eventName string) error {
	if n <= 0 {
		return nil
	}
	src := &benchWaitSource{n: n, name: eventName, now: time.Now()}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"waits"}, benchWaitColumns, src); err != nil {
		return fmt.Errorf("postgres: load bench waits: %w", err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO wait_paths (event_name, match_path) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
		eventName, BenchWaitKey(eventName, 0).MatchPath); err != nil {
		return fmt.Errorf("postgres: load bench waits: %w", err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE waits`); err != nil {
		return fmt.Errorf("postgres: load bench waits: %w", err)
	}
	return nil
}

var benchWaitColumns = []string{"id", "kind", "app_id", "function_id", "run_id", "workflow_id", "step_id",
	"event_name", "match_path", "match_value", "expr", "trigger_event", "since", "expires_at", "created_at"}

// benchWaitSource generates the rows of LoadWaitsForBench for COPY.
type benchWaitSource struct {
	n, i int
	name string
	now  time.Time
	row  [15]any
}

func (s *benchWaitSource) Next() bool { s.i++; return s.i <= s.n }
func (s *benchWaitSource) Err() error { return nil }
func (s *benchWaitSource) Values() ([]any, error) {
	i := s.i - 1
	key := BenchWaitKey(s.name, i)
	wf := fmt.Sprintf("bench/%s/%09d", s.name, i)
	trigger := fmt.Sprintf(`{"id":"trigger-%d","name":"bench/start","data":{"userId":"u_%d"},"ts":0,"v":""}`, i, i)
	s.row = [15]any{
		fmt.Sprintf("bench-%s-%09d", s.name, i), store.WaitKindWait, "bench", "fn", "run-" + wf, wf, "wait",
		s.name, key.MatchPath, key.MatchValue, "async.data.amount > 10", trigger,
		s.now.Add(-time.Minute), s.now.Add(24 * time.Hour), s.now,
	}
	return s.row[:], nil
}
