package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/herald-run/herald"
	"github.com/herald-run/herald/examples/demo/demoapp"
	"github.com/herald-run/herald/ingest"
	"github.com/herald-run/herald/internal/console"
	"github.com/herald-run/herald/internal/server"
	"github.com/herald-run/herald/internal/temporaltest"
	"github.com/herald-run/herald/internal/testlog"
	"github.com/herald-run/herald/router"
	"github.com/herald-run/herald/store/sqlite"
)

// temporalUI is the Temporal UI base the console under test links to.
const temporalUI = "http://127.0.0.1:8233"

var (
	devServer *testsuite.DevServer
	// dev is a Herald as `herald dev` runs it (SQLite, no signing key) with
	// the example app's worker, shared by the package's tests.
	dev *heraldProc
	seq atomic.Int64
)

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "console tests:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	ctx := context.Background()
	ds, err := temporaltest.Start(ctx, temporaltest.Options{})
	if err != nil {
		return 0, fmt.Errorf("cannot start the Temporal dev server: %w", err)
	}
	devServer = ds
	defer func() { _ = ds.Stop() }()
	dir, err := os.MkdirTemp("", "herald-console-test-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	dev, err = startHerald(dir, "")
	if err != nil {
		return 0, err
	}
	defer dev.stop()
	w, err := herald.NewWorker(herald.WorkerOptions{App: demoapp.AppID, HeraldURL: dev.url, Client: ds.Client()})
	if err != nil {
		return 0, err
	}
	if err := demoapp.Register(w); err != nil {
		return 0, err
	}
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := w.Start(startCtx); err != nil {
		return 0, fmt.Errorf("the demo worker did not start: %w", err)
	}
	defer w.Stop()
	defer stopBrowser()
	return m.Run(), nil
}

// heraldProc is a running Herald: API and console on one listener.
type heraldProc struct {
	url  string
	key  string
	logs *syncBuffer
	stop func()
}

// startHerald runs Herald on a SQLite store under dir, with signingKey (""
// for dev mode), until stop is called.
func startHerald(dir, signingKey string) (*heraldProc, error) {
	ctx, cancel := context.WithCancel(context.Background())
	st, err := sqlite.Open(ctx, filepath.Join(dir, fmt.Sprintf("herald-%d.db", seq.Add(1))))
	if err != nil {
		cancel()
		return nil, err
	}
	if err := st.Migrate(ctx); err != nil {
		cancel()
		return nil, err
	}
	ic := ingest.Config{AllowAnyEventKey: signingKey == "", Flushers: 1, SigningKey: signingKey}
	if signingKey != "" {
		ic.EventKeys = []string{"console-test-event-key"}
	}
	logs := &syncBuffer{}
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, server.Options{
			Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			Addr:   "127.0.0.1:0", Store: st, Temporal: devServer.Client(),
			Ingest:  ic,
			Router:  router.Config{PollInterval: 100 * time.Millisecond, SystemTaskQueue: fmt.Sprintf("herald-system-console-%d-%d", os.Getpid(), seq.Add(1))},
			Console: console.Config{TemporalUIURL: temporalUI, PollInterval: 500 * time.Millisecond},
			Ready:   func(_ context.Context, url string) { ready <- url },
		})
	}()
	p := &heraldProc{key: signingKey, logs: logs}
	select {
	case p.url = <-ready:
	case err := <-done:
		cancel()
		_ = st.Close()
		return nil, fmt.Errorf("herald did not start: %w", err)
	}
	p.stop = func() {
		cancel()
		<-done
		_ = st.Close()
	}
	return p, nil
}

// api calls Herald's REST API directly (with the signing key, if any) and
// returns the status and body.
func (h *heraldProc) api(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		// Markup stays literal in the JSON sent, as a careless client sends it.
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		require.NoError(t, enc.Encode(body))
		rd = &buf
	}
	req, err := http.NewRequest(method, h.url+path, rd)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if h.key != "" {
		req.Header.Set("Authorization", "Bearer "+h.key)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, raw
}

// send posts one event to /e and returns its id.
func (h *heraldProc) send(t *testing.T, name string, data any) string {
	t.Helper()
	key := "test"
	if h.key != "" {
		key = "console-test-event-key"
	}
	status, raw := h.api(t, http.MethodPost, "/e/"+key, map[string]any{"name": name, "data": data})
	require.Equal(t, http.StatusOK, status, string(raw))
	var out struct {
		IDs []string `json:"ids"`
	}
	require.NoError(t, json.Unmarshal(raw, &out))
	require.Len(t, out.IDs, 1)
	return out.IDs[0]
}

type runOut struct {
	RunID      string          `json:"run_id"`
	WorkflowID string          `json:"workflow_id"`
	FunctionID string          `json:"function_id"`
	Status     string          `json:"status"`
	Error      string          `json:"error"`
	Output     json.RawMessage `json:"output"`
}

func (h *heraldProc) runs(t *testing.T, eventID string) []runOut {
	t.Helper()
	status, raw := h.api(t, http.MethodGet, "/v1/events/"+eventID+"/runs", nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	var out struct {
		Data []runOut `json:"data"`
	}
	require.NoError(t, json.Unmarshal(raw, &out))
	return out.Data
}

type syncBuffer = testlog.Buffer

// The browser: one chromium for the package, a tab per test.
var (
	browserOnce   sync.Once
	browserCtx    context.Context
	browserErr    error
	browserCancel = func() {}
)

func stopBrowser() { browserCancel() }

// browserPath finds Debian's chromium; tests never download a browser.
func browserPath() string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// tab opens a browser tab for the test, bounded by timeout. Without
// chromium the test is skipped, unless HERALD_REQUIRE_BROWSER=1.
func tab(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	path := browserPath()
	if path == "" {
		if os.Getenv("HERALD_REQUIRE_BROWSER") == "1" {
			t.Fatal("chromium is not installed and HERALD_REQUIRE_BROWSER=1: install it with apt-get install chromium")
		}
		t.Skip("chromium is not installed (apt-get install chromium): skipping the browser test; set HERALD_REQUIRE_BROWSER=1 to fail instead")
	}
	browserOnce.Do(func() {
		opts := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1280, 860))
		alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		ctx, cancelCtx := chromedp.NewContext(alloc)
		browserCtx = ctx
		browserCancel = func() { cancelCtx(); cancelAlloc() }
		// The first action starts chromium, which lives as long as ctx.
		browserErr = chromedp.Do(ctx, chromedp.Navigate("about:blank"))
	})
	require.NoError(t, browserErr, "chromium did not start")
	ctx, cancel := chromedp.NewContext(browserCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() {
		cancelTimeout()
		cancel()
	})
	return ctx
}

// js quotes s as a JavaScript string literal.
func js(s string) string {
	raw, _ := json.Marshal(s)
	return string(raw)
}

// screenshot writes the tab's viewport to $HERALD_SCREENSHOTS/name when
// that directory is set (make screenshots).
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("HERALD_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), png, 0o644))
	t.Logf("wrote %s", filepath.Join(dir, name))
}

// missingRoute reports whether the API answers method path with "no route".
func missingRoute(t *testing.T, h *heraldProc, method, path string) bool {
	t.Helper()
	status, raw := h.api(t, method, path, nil)
	return (status == http.StatusNotFound && strings.Contains(string(raw), "no route for")) || status == http.StatusMethodNotAllowed
}
