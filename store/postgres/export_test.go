package postgres

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-run/herald/store"
)

// CacheClaimPlans makes d run its claims from a cached plan whatever the
// size of events (see claimPlanCached), so tests on small tables cover
// that path too.
func CacheClaimPlans(d *Driver) { d.claimCachePages = 0 }

// ExplainCandidateWaits returns the plan of the candidate lookup for names and
// keys, as a claim would run it; generic forces the generic plan a prepared
// statement switches to after its first executions.
func ExplainCandidateWaits(ctx context.Context, pool *pgxpool.Pool, generic bool, names []string, keys []store.WaitKey) (string, error) {
	all := store.CandidateKeys(names, keys)
	en, mp, mv := make([]string, len(all)), make([]string, len(all)), make([]string, len(all))
	for i, k := range all {
		en[i], mp[i], mv[i] = k.EventName, k.MatchPath, k.MatchValue
	}
	var lines []string
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		mode := "auto"
		if generic {
			mode = "force_generic_plan"
		}
		if _, err := tx.Exec(ctx, `SELECT set_config('plan_cache_mode', $1, true)`, mode); err != nil {
			return err
		}
		// EXPLAIN EXECUTE goes through the plan cache, as a pgx prepared
		// statement does.
		if _, err := tx.Exec(ctx, `PREPARE explain_candidates (text[], text[], text[]) AS `+candidateWaitsSQL); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `EXPLAIN EXECUTE explain_candidates ($1, $2, $3)`, pgx.QueryExecModeSimpleProtocol, en, mp, mv)
		if err != nil {
			return err
		}
		if lines, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DEALLOCATE explain_candidates`) // prepared statements outlive transactions
		return err
	})
	return strings.Join(lines, "\n"), err
}
