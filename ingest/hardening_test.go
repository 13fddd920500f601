package ingest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/ingest"
	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/store"
)

// A client with an event key posts, first, the exact id Herald will give a
// run's herald/function.finished event. Before, the system event was then
// silently dropped as a duplicate; now the client's id is refused and the
// system event is stored when the run finishes.
func TestDerivedIDsCannotBeTakenByClients(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		b := setup(t, driver, serveMode)
		signed := http.Header{"Authorization": {"Bearer " + authSigningKey}, "Content-Type": {"application/json"}}
		const runID = "01JDERIVEDIDTESTRUN0000000"
		sysID := wire.DerivedEventID(runID, wire.EventFunctionFinished)

		requireError(t, b.postTo(t, authEventKeyA, `{"name":"evil/x","id":"`+sysID+`"}`), http.StatusBadRequest, "event 0: id", "reserved")
		requireError(t, b.postTo(t, authEventKeyA, `[{"name":"ok/x"},{"name":"evil/x","id":"`+sysID+`"}]`), http.StatusBadRequest, "event 1: id", "reserved")

		// Nor through a webhook, whose delivery id becomes the event id.
		w := b.createWebhookAs(t, svixSource("evil", ""), signed)
		body := `{"type":"x"}`
		requireError(t, b.deliver(t, w.ID, body, svixHeaders(t, svixSecret, sysID, time.Now(), body)), http.StatusBadRequest, "event 0: id", "reserved")

		events, _, err := b.store.ListEvents(context.Background(), store.EventFilter{})
		require.NoError(t, err)
		require.Empty(t, events, "no refused event was stored")

		// The run finishes: its system event is stored under the derived id.
		fin, err := json.Marshal(wire.RunFinish{AppID: "app", FunctionID: "fn", WorkflowID: "app/fn/e1", Status: wire.RunCompleted,
			Output: json.RawMessage(`{"ok":true}`), Event: wire.Event{ID: "e1", Name: "app/thing", Data: json.RawMessage(`{}`)}, Emit: true})
		require.NoError(t, err)
		r := b.do(t, http.MethodPost, "/v1/runs/"+runID+"/finish", strings.NewReader(string(fin)), signed)
		require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
		e, err := b.store.GetEvent(context.Background(), sysID)
		require.NoError(t, err)
		require.Equal(t, wire.EventFunctionFinished, e.Name)

		// Workers, which hold the signing key, may send derived ids: it is
		// how step.SendEvent's retries store an event once.
		stepID := wire.DerivedEventID(runID, "notify", "0")
		r = b.do(t, http.MethodPost, "/v1/events", strings.NewReader(`{"name":"app/notified","id":"`+stepID+`"}`), signed)
		require.Equal(t, []string{stepID}, requireAccepted(t, r))
	})
}

// Bytes no id, name or filter can hold get a 400 naming the parameter, not
// the 503 "store unavailable" a driver's refusal looked like, and not an
// echo of the value (the /e/{key} path carries the event key).
func TestBadBytesInPathAndQuery(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		b := setup(t, driver)
		for _, tc := range []struct{ method, path, param string }{
			{http.MethodPost, "/w/%00", `path parameter "id"`},
			{http.MethodPost, "/w/%ff", `path parameter "id"`},
			{http.MethodGet, "/v1/events/%ff", `path parameter "id"`},
			{http.MethodGet, "/v1/events/a%00b/runs", `path parameter "id"`},
			{http.MethodGet, "/v1/runs/%00", `path parameter "id"`},
			{http.MethodDelete, "/v1/runs/%e2%80%ae", `path parameter "id"`},
			{http.MethodGet, "/v1/webhooks/%ff", `path parameter "id"`},
			{http.MethodGet, "/v1/cancellations/%0a", `path parameter "id"`},
			{http.MethodGet, "/v1/events?name=%00", `query parameter "name"`},
			{http.MethodGet, "/v1/events?name=%ff%fe", `query parameter "name"`},
			{http.MethodPost, "/e/key%00secret", `path parameter "key"`},
		} {
			r := b.do(t, tc.method, tc.path, strings.NewReader(`{"name":"a/b"}`), nil)
			requireError(t, r, http.StatusBadRequest, tc.param, "valid UTF-8 without control characters")
			require.NotContains(t, string(r.body), "secret", tc.path)
			require.NotContains(t, string(r.body), "store", tc.path)
		}
	})
}

func TestTimeFiltersOutOfRange(t *testing.T) {
	t.Parallel()
	b := setup(t, "sqlite")
	for _, v := range []string{"9999999999999999", "9223372036854775807", "-1", "-9223372036854775808", "0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z"} {
		for _, param := range []string{"received_after", "received_before"} {
			requireError(t, b.get(t, "/v1/events?"+param+"="+v), http.StatusBadRequest, param, "must be between")
		}
	}
	id := b.ingest(t, `{"name":"range/x"}`)[0]
	for _, q := range []string{"received_after=0", "received_before=253402300799999", "received_after=1970-01-01T00:00:00Z&received_before=9999-12-31T23:59:59Z"} {
		vals, err := url.ParseQuery(q)
		require.NoError(t, err)
		page := b.list(t, vals)
		require.Len(t, page.Data, 1, q)
		require.Equal(t, id, page.Data[0].ID, q)
	}
	requireError(t, b.do(t, http.MethodPost, "/v1/cancellations", strings.NewReader(`{"function_id":"a/f","started_after":"9223372036854775807"}`), nil),
		http.StatusBadRequest, "must be between")
}

func TestHeadOnGetRoutes(t *testing.T) {
	t.Parallel()
	b := setup(t, "sqlite")
	id := b.ingest(t, `{"name":"head/x"}`)[0]
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/v1/events", "/v1/events/" + id, "/v1/events/" + id + "/runs", "/v1/functions", "/v1/webhooks"} {
		r := b.do(t, http.MethodHead, path, nil, nil)
		require.Equal(t, http.StatusOK, r.status, path)
		require.Empty(t, r.body, path)
	}
	require.Equal(t, http.StatusNotFound, b.do(t, http.MethodHead, "/v1/events/nope", nil, nil).status)
}

// /e/{key}/ used to redirect to /e/{key}, with the key in Location.
func TestNoRedirectCarriesTheKey(t *testing.T) {
	t.Parallel()
	b := setup(t, "sqlite")
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, path := range []string{"/e/" + eventKey + "/", "/E/" + eventKey, "/e//" + eventKey} {
		req, err := http.NewRequest(http.MethodPost, b.http.URL+path, strings.NewReader(`{"name":"a/b"}`))
		require.NoError(t, err)
		resp, err := noFollow.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusNotFound, resp.StatusCode, path)
		require.Empty(t, resp.Header.Get("Location"), path)
	}
	events, _, err := b.store.ListEvents(context.Background(), store.EventFilter{})
	require.NoError(t, err)
	require.Empty(t, events)
}

func TestMetricsElsewhere(t *testing.T) {
	t.Parallel()
	b := setup(t, "sqlite", func(c *ingest.Config) { c.MetricsElsewhere = true })
	require.Equal(t, http.StatusNotFound, b.get(t, "/metrics").status)
	require.Equal(t, http.StatusNotFound, b.get(t, "/debug/pprof/").status)
	ms := httptest.NewServer(b.srv.OperatorHandler())
	t.Cleanup(ms.Close)
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/heap?debug=1"} {
		resp, err := http.Get(ms.URL + path)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
	}
}

// Profiles are served with the signing key (and open in dev, which has none).
func TestPprof(t *testing.T) {
	t.Parallel()
	b := setup(t, "sqlite", serveMode)
	requireError(t, b.get(t, "/debug/pprof/heap"), http.StatusUnauthorized, "missing signing key")
	r := b.do(t, http.MethodGet, "/debug/pprof/heap?debug=1", nil, http.Header{"Authorization": {"Bearer " + authSigningKey}})
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, string(r.body), "heap profile")
	dev := setup(t, "sqlite", func(c *ingest.Config) { c.AllowAnyEventKey = true })
	require.Equal(t, http.StatusOK, dev.get(t, "/debug/pprof/goroutine?debug=1").status)
}

// hangingStore answers no insert (a frozen PostgreSQL: connections hang) and
// records the deadline each insert was given.
type hangingStore struct {
	store.Driver
	mu        sync.Mutex
	deadlines []time.Time
}

func (h *hangingStore) InsertEvents(ctx context.Context, _ []store.Event, _ time.Time) ([]bool, error) {
	d, _ := ctx.Deadline()
	h.mu.Lock()
	h.deadlines = append(h.deadlines, d)
	h.mu.Unlock()
	<-ctx.Done()
	return nil, ctx.Err()
}

// A request queued behind a commit that hangs gets its 503 by its own
// arrival plus the commit timeout: the deadline of the transaction that
// carries it is that, not the moment a flusher got to it plus the timeout.
func TestCommitDeadlineCountsFromArrival(t *testing.T) {
	t.Parallel()
	const timeout = 2 * time.Second
	hs := &hangingStore{}
	b := setup(t, "sqlite", func(c *ingest.Config) {
		hs.Driver = c.Store
		c.Store = hs
		c.CommitTimeout = timeout
		c.Flushers = 1
	})
	first := make(chan response, 1)
	go func() { first <- b.post(t, `{"name":"hang/first"}`) }()
	require.Eventually(t, func() bool { hs.mu.Lock(); defer hs.mu.Unlock(); return len(hs.deadlines) == 1 }, time.Minute, time.Millisecond)
	sent := time.Now()
	second := b.post(t, `{"name":"hang/second"}`)
	requireError(t, second, http.StatusServiceUnavailable)
	requireError(t, <-first, http.StatusServiceUnavailable)
	hs.mu.Lock()
	defer hs.mu.Unlock()
	// The second request was either dropped unwritten when its deadline
	// passed in the queue, or written in a transaction bounded by it: about
	// sent+timeout. Counted from when the flusher took it, it would be about
	// sent+2*timeout (the first commit holds the only flusher for timeout).
	for _, d := range hs.deadlines[1:] {
		require.True(t, d.Before(sent.Add(timeout+timeout/2)), "the second request's transaction ends by its own deadline (%s after it was sent)", d.Sub(sent))
	}
}

// The replace bomb as a webhook transform used to kill the process on the
// first signed delivery. Now the delivery gets a 400 that does not quote
// the transform, and Herald stays up.
func TestWebhookTransformBomb(t *testing.T) {
	t.Parallel()
	b := setup(t, "sqlite")
	x := "body.s" + strings.Repeat(`.replace("a","aaaaaaaaaa")`, 4)
	bomb := `{"name": "bomb/x", "data": {"v": ` + x + `.replace("a", ` + x + `)}}`
	raw, err := json.Marshal(bomb)
	require.NoError(t, err)
	w := b.createWebhook(t, strings.Replace(svixSource("bomb", ""), `"transform":""`, `"transform":`+string(raw), 1))
	body := `{"s":"aaaaaaaaaa"}`
	r := b.deliver(t, w.ID, body, svixHeaders(t, svixSecret, "msg_bomb", time.Now(), body))
	requireError(t, r, http.StatusBadRequest, "transform failed")
	require.NotContains(t, string(r.body), "aaaaaaaaaa", "the reply does not quote the transform")
	require.Equal(t, http.StatusOK, b.get(t, "/healthz").status)
}

// A stored transform a newer Herald no longer compiles is the source
// owner's to fix: the sender gets a 500 (it retries later) that does not
// quote the transform.
func TestWebhookStoredTransformThatNoLongerCompiles(t *testing.T) {
	t.Parallel()
	b := setup(t, "sqlite")
	w := b.createWebhook(t, svixSource("old", ""))
	stored, err := b.store.GetWebhook(context.Background(), w.ID)
	require.NoError(t, err)
	stored.ID, stored.Transform = "wh_broken", `{"name": "x/" + secret_token_literal_1234}`
	require.NoError(t, b.store.CreateWebhook(context.Background(), stored))
	body := `{"s":"a"}`
	r := b.deliver(t, stored.ID, body, svixHeaders(t, svixSecret, "msg_old", time.Now(), body))
	requireError(t, r, http.StatusInternalServerError, "transform does not compile")
	require.NotContains(t, string(r.body), "secret_token_literal_1234")
}
