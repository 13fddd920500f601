package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/store"
	"github.com/herald-run/herald/store/sqlite"
	"github.com/herald-run/herald/store/storetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Driver {
		d, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "herald.db"))
		require.NoError(t, err)
		t.Cleanup(func() { _ = d.Close() })
		require.NoError(t, d.Migrate(context.Background()))
		return d
	})
}
