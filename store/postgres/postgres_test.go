package postgres_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/internal/testdb"
	"github.com/herald-run/herald/store"
	"github.com/herald-run/herald/store/postgres"
	"github.com/herald-run/herald/store/storetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, opener(false))
}

// The same, with claims run from a cached plan from the first, as a driver
// runs them once the events table is large.
func TestConformanceCachedClaimPlan(t *testing.T) {
	t.Parallel()
	storetest.Run(t, opener(true))
}

func opener(cachedClaimPlan bool) storetest.Opener {
	return func(t *testing.T) store.Driver {
		d, err := postgres.Open(context.Background(), testdb.Schema(t))
		require.NoError(t, err)
		t.Cleanup(func() { _ = d.Close() })
		require.NoError(t, d.Migrate(context.Background()))
		if cachedClaimPlan {
			postgres.CacheClaimPlans(d)
		}
		return d
	}
}
