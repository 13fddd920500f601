package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/ingest"
	"github.com/herald-run/herald/internal/testdb"
	"github.com/herald-run/herald/store"
)

type result struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, ctx context.Context, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(ctx, args, &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	r := runCLI(t, context.Background(), "--help")
	require.Equal(t, 0, r.code)
	for _, cmd := range commands() {
		require.Contains(t, r.stderr, cmd.name)
		h := runCLI(t, context.Background(), cmd.name, "--help")
		require.Equal(t, 0, h.code, cmd.name)
		require.Contains(t, h.stderr, "Usage: herald "+cmd.name)
	}
	serve := runCLI(t, context.Background(), "serve", "--help")
	for _, env := range []string{"HERALD_DATABASE_URL", "HERALD_EVENT_KEYS", "HERALD_SIGNING_KEY", "HERALD_TEMPORAL_ADDRESS", "HERALD_TEMPORAL_NAMESPACE", "HERALD_ADDR"} {
		require.Contains(t, serve.stderr, "$"+env)
	}

	r = runCLI(t, context.Background(), "nope")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, `unknown command "nope"`)
}

func TestSecretsNotShownInHelp(t *testing.T) {
	t.Setenv("HERALD_SIGNING_KEY", "super-secret-signing-key")
	t.Setenv("HERALD_EVENT_KEYS", "super-secret-event-key")
	r := runCLI(t, context.Background(), "serve", "--help")
	require.Equal(t, 0, r.code)
	require.NotContains(t, r.stderr, "super-secret")
}

func TestServeRefusesWithoutKeys(t *testing.T) {
	t.Setenv("HERALD_EVENT_KEYS", "")
	t.Setenv("HERALD_SIGNING_KEY", "")
	r := runCLI(t, context.Background(), "serve", "--database-url", testdb.BaseURL())
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "refusing to start without event keys and a signing key")

	r = runCLI(t, context.Background(), "serve", "--database-url", testdb.BaseURL(), "--event-keys", "k1")
	require.Equal(t, 2, r.code, "an event key without a signing key is not enough")
}

func TestBadEnvironmentValue(t *testing.T) {
	t.Setenv("HERALD_MAX_EVENTS_PER_REQUEST", "many")
	r := runCLI(t, context.Background(), "dev", "--data-dir", t.TempDir())
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "HERALD_MAX_EVENTS_PER_REQUEST")
}

func TestMigrateSQLite(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "h.db")
	for range 2 { // idempotent
		r := runCLI(t, context.Background(), "migrate", "--database-url", "sqlite:"+path, "--skip-temporal")
		require.Equal(t, 0, r.code, r.stderr)
		require.Contains(t, r.stdout, "database migrated")
	}
	r := runCLI(t, context.Background(), "migrate", "--database-url", "mysql://x", "--skip-temporal")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "unsupported database URL")
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	require.Equal(t, "postgres://herald:xxxxx@db:5432/h", redactURL("postgres://herald:s3cret@db:5432/h"))
	require.Equal(t, "postgres://db:5432/h", redactURL("postgres://db:5432/h"))
}

// TestSendAndEventsAgainstServe runs `herald serve` on Postgres, then sends an
// event with `herald send` and reads it back with `herald events ls|get`.
func TestSendAndEventsAgainstServe(t *testing.T) {
	t.Parallel()
	dbURL := testdb.Schema(t)
	r := runCLI(t, context.Background(), "migrate", "--database-url", dbURL, "--skip-temporal")
	require.Equal(t, 0, r.code, r.stderr)

	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() {
		done <- runCLI(t, ctx, "serve", "--addr", addr, "--database-url", dbURL,
			"--event-keys", "key-one, key-two", "--signing-key", "sign-me", "--temporal-address", freeAddr(t), "--log-level", "error")
	}()
	url := "http://" + addr
	waitHealthy(t, url)

	r = runCLI(t, context.Background(), "send", "demo/cli.test", "--url", url, "--event-key", "key-two", "--data", `{"from":"cli"}`, "--id", "cli-1")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "cli-1\n", r.stdout)

	r = runCLI(t, context.Background(), "send", "demo/cli.test", "--url", url, "--event-key", "wrong")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "401")

	r = runCLI(t, context.Background(), "events", "ls", "--url", url)
	require.Equal(t, 1, r.code, "REST needs the signing key")
	require.Contains(t, r.stderr, "signing key")

	r = runCLI(t, context.Background(), "events", "ls", "--url", url, "--signing-key", "sign-me")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "cli-1")
	require.Contains(t, r.stdout, "demo/cli.test")

	r = runCLI(t, context.Background(), "events", "get", "cli-1", "--url", url, "--signing-key", "sign-me")
	require.Equal(t, 0, r.code, r.stderr)
	var got ingest.EventJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &got))
	require.Equal(t, "demo/cli.test", got.Name)
	require.JSONEq(t, `{"from":"cli"}`, string(got.Data))

	// Readiness names Temporal, which is not running at that address.
	resp, err := http.Get(url + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)

	cancel()
	select {
	case r := <-done:
		require.Equal(t, 0, r.code, r.stderr)
	case <-time.After(30 * time.Second):
		t.Fatal("herald serve did not stop")
	}
}

// TestEventsLsPaging checks the table output and the cursor hint against an
// in-process server with SQLite.
func TestEventsLsPaging(t *testing.T) {
	t.Parallel()
	st, err := openStore(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "h.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	require.NoError(t, st.Migrate(context.Background()))
	srv, err := ingest.New(ingest.Config{Store: st, AllowAnyEventKey: true, Flushers: 1})
	require.NoError(t, err)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); srv.Close() })

	for i := range 3 {
		r := runCLI(t, context.Background(), "send", fmt.Sprintf("page/%d", i), "--url", hs.URL)
		require.Equal(t, 0, r.code, r.stderr)
	}
	r := runCLI(t, context.Background(), "events", "ls", "--url", hs.URL, "--limit", "2")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "page/2")
	require.Contains(t, r.stdout, "page/1")
	require.NotContains(t, r.stdout, "page/0")
	i := strings.Index(r.stdout, "--cursor ")
	require.Positive(t, i, r.stdout)
	cursor := strings.TrimSpace(r.stdout[i+len("--cursor "):])
	r = runCLI(t, context.Background(), "events", "ls", "--url", hs.URL, "--limit", "2", "--cursor", cursor)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "page/0")

	r = runCLI(t, context.Background(), "send", "x", "--url", hs.URL, "--data", "{nope")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "not valid JSON")
}

// TestDev runs `herald dev` as `make dev` does: it starts the Temporal dev
// server from the CLI binary, serves the API on SQLite, and stops both on
// cancel.
func TestDev(t *testing.T) {
	t.Parallel()
	cli := os.Getenv("HERALD_TEMPORAL_CLI")
	if cli == "" {
		cli = filepath.Join("..", "..", "bin", "temporal")
	}
	if _, err := os.Stat(cli); err != nil {
		t.Fatalf("the Temporal CLI is needed at %s (run 'make tools', or set HERALD_TEMPORAL_CLI): %v", cli, err)
	}
	dir := t.TempDir()
	addr, temporalAddr, uiPort := freeAddr(t), freeAddr(t), freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() {
		done <- runCLI(t, ctx, "dev", "--addr", addr, "--data-dir", dir, "--temporal-cli", cli,
			"--temporal-address", temporalAddr, "--temporal-ui-port", fmt.Sprint(uiPort), "--log-level", "warn")
	}()
	url := "http://" + addr
	waitHealthy(t, url)

	resp, err := http.Get(url + "/readyz")
	require.NoError(t, err)
	var ready struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&ready))
	resp.Body.Close()
	require.Equal(t, "ok", ready.Status, ready.Checks)
	require.Equal(t, "ok", ready.Checks["temporal"])

	r := runCLI(t, context.Background(), "send", "demo/user.signup", "--url", url, "--event-key", "anything", "--data", `{"plan":"pro"}`)
	require.Equal(t, 0, r.code, r.stderr)
	id := strings.TrimSpace(r.stdout)
	r = runCLI(t, context.Background(), "events", "ls", "--url", url)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, id)

	ui, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", uiPort))
	require.NoError(t, err, "the Temporal Web UI should be served")
	ui.Body.Close()
	require.Equal(t, http.StatusOK, ui.StatusCode)

	cancel()
	select {
	case r := <-done:
		require.Equal(t, 0, r.code, r.stderr)
	case <-time.After(60 * time.Second):
		t.Fatal("herald dev did not stop")
	}
	require.FileExists(t, filepath.Join(dir, "herald.db"))
	require.FileExists(t, filepath.Join(dir, "temporal.db"))
	// The dev server's database is in WAL mode (a setting kept in the file)
	// and syncs every commit.
	db, err := sql.Open("sqlite", filepath.Join(dir, "temporal.db"))
	require.NoError(t, err)
	defer db.Close()
	var mode string
	require.NoError(t, db.QueryRow("PRAGMA journal_mode").Scan(&mode))
	require.Equal(t, "wal", mode, "journal mode of the dev server's database")
	// The dev server is gone with Herald.
	_, err = net.DialTimeout("tcp", temporalAddr, time.Second)
	require.Error(t, err, "the Temporal dev server should stop with herald dev")
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func freeAddr(t *testing.T) string {
	return fmt.Sprintf("127.0.0.1:%d", freePort(t))
}

func waitHealthy(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not become healthy", url)
}

// TestWebhooksCommand creates, lists and deletes a webhook source with
// `herald webhooks` against an in-process server with SQLite. Not parallel:
// it sets HERALD_WEBHOOK_SECRET.
func TestWebhooksCommand(t *testing.T) {
	st, err := openStore(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "h.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	require.NoError(t, st.Migrate(context.Background()))
	srv, err := ingest.New(ingest.Config{Store: st, AllowAnyEventKey: true, Flushers: 1})
	require.NoError(t, err)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); srv.Close() })

	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	r := runCLI(t, context.Background(), "webhooks", "create", "--url", hs.URL, "--name", "clerk", "--scheme", "svix",
		"--secret", secret, "--allow-events", "clerk/user.*, clerk/session.created",
		"--transform", `{"name": "clerk/" + body.type, "data": body.data, "id": headers["svix-id"]}`)
	require.Equal(t, 0, r.code, r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 2, r.stdout)
	id := lines[0]
	require.True(t, strings.HasPrefix(id, "wh_"), id)
	require.Equal(t, hs.URL+"/w/"+id, lines[1])
	stored, err := st.GetWebhook(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, []string{"clerk/user.*", "clerk/session.created"}, stored.AllowEvents)

	// hmac-sha256 with its fields; the secret from the environment.
	t.Setenv("HERALD_WEBHOOK_SECRET", "env-secret")
	r = runCLI(t, context.Background(), "webhooks", "create", "--url", hs.URL, "--name", "generic", "--scheme", "hmac-sha256",
		"--header", "X-Signature", "--encoding", "base64", "--prefix", "v1=")
	require.Equal(t, 0, r.code, r.stderr)
	generic := strings.Split(r.stdout, "\n")[0]
	stored, err = st.GetWebhook(context.Background(), generic)
	require.NoError(t, err)
	require.JSONEq(t, `{"scheme":"hmac-sha256","secret":"env-secret","header":"X-Signature","encoding":"base64","prefix":"v1="}`, string(stored.Verify))

	r = runCLI(t, context.Background(), "webhooks", "ls", "--url", hs.URL)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "SCHEME")
	require.Regexp(t, id+`\s+clerk\s+svix\s+`+hs.URL+"/w/"+id, r.stdout)
	require.Regexp(t, generic+`\s+generic\s+hmac-sha256`, r.stdout)
	require.NotContains(t, r.stdout, "env-secret")

	// Server-side validation comes back as the error.
	r = runCLI(t, context.Background(), "webhooks", "create", "--url", hs.URL, "--name", "bad", "--scheme", "nope")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "400")
	require.Contains(t, r.stderr, "verify: scheme")
	r = runCLI(t, context.Background(), "webhooks", "create", "--url", hs.URL, "--scheme", "svix")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "--name")

	r = runCLI(t, context.Background(), "webhooks", "rm", id, "--url", hs.URL)
	require.Equal(t, 0, r.code, r.stderr)
	_, err = st.GetWebhook(context.Background(), id)
	require.ErrorIs(t, err, store.ErrNotFound)
	r = runCLI(t, context.Background(), "webhooks", "rm", id, "--url", hs.URL)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "404")

	r = runCLI(t, context.Background(), "webhooks", "nope", "--url", hs.URL)
	require.Equal(t, 2, r.code)
}

func TestWebhookSecretNotShownInHelp(t *testing.T) {
	t.Setenv("HERALD_WEBHOOK_SECRET", "super-secret-webhook-secret")
	r := runCLI(t, context.Background(), "webhooks", "--help")
	require.Equal(t, 0, r.code)
	require.Contains(t, r.stderr, "$HERALD_WEBHOOK_SECRET")
	require.NotContains(t, r.stderr, "super-secret")
}

func TestTemporalCompressionFlag(t *testing.T) {
	for _, cmd := range [][]string{
		{"dev", "--data-dir", t.TempDir()},
		{"serve", "--insecure", "--database-url", testdb.BaseURL()},
		{"migrate", "--database-url", testdb.BaseURL()},
	} {
		r := runCLI(t, context.Background(), append(cmd, "--temporal-grpc-compression", "zstd")...)
		require.Equal(t, 2, r.code, cmd[0])
		require.Contains(t, r.stderr, `--temporal-grpc-compression: gRPC compression "zstd": must be "none" or "gzip"`, cmd[0])
	}
	t.Setenv("HERALD_TEMPORAL_GRPC_COMPRESSION", "brotli")
	r := runCLI(t, context.Background(), "dev", "--data-dir", t.TempDir())
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, `"brotli"`)
}
