// Package testdb gives tests an isolated PostgreSQL schema on the database named
// by HERALD_TEST_DATABASE_URL (default postgres://127.0.0.1:5432/test).
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultURL is used when HERALD_TEST_DATABASE_URL is unset.
const DefaultURL = "postgres://127.0.0.1:5432/test"

// BaseURL returns the test database URL from the environment or the default.
func BaseURL() string {
	if u := os.Getenv("HERALD_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

const unreachable = `PostgreSQL is not reachable at %s: %v

Herald's tests need a real PostgreSQL. Start the local server with
    pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start
or point HERALD_TEST_DATABASE_URL at another database (trust or password in the URL).`

// Schema creates a fresh, empty schema, drops it when the test ends, and
// returns a database URL whose connections use it as their search_path.
// It fails the test (never skips) when PostgreSQL is unreachable.
func Schema(tb testing.TB) string {
	tb.Helper()
	base := BaseURL()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		tb.Fatalf(unreachable, base, err)
	}
	defer conn.Close(context.Background())

	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "herald_test_" + sanitize(tb.Name()) + "_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize()); err != nil {
		tb.Fatalf("testdb: create schema %s: %v", name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			tb.Logf("testdb: drop schema %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
			tb.Logf("testdb: drop schema %s: %v", name, err)
		}
	})
	return WithSearchPath(tb, base, name)
}

// WithSearchPath returns base with its search_path set to schema.
func WithSearchPath(tb testing.TB, base, schema string) string {
	tb.Helper()
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		tb.Fatalf("testdb: HERALD_TEST_DATABASE_URL must be a postgres:// URL, got %q", base)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func sanitize(s string) string {
	s = strings.ToLower(s)
	var b strings.Builder
	for _, r := range s {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= 30 {
			break
		}
	}
	return fmt.Sprint(b.String())
}
