package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/ingest"
	"github.com/herald-run/herald/internal/testdb"
	"github.com/herald-run/herald/store"
	"github.com/herald-run/herald/store/postgres"
	"github.com/herald-run/herald/store/sqlite"
)

const eventKey = "test-event-key"

var drivers = []string{"postgres", "sqlite"}

// forEachDriver runs fn once per store driver, as parallel subtests named
// after the driver.
func forEachDriver(t *testing.T, fn func(t *testing.T, driver string)) {
	t.Helper()
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			fn(t, driver)
		})
	}
}

// openStore returns a fresh, migrated, empty store that is closed when the
// test ends.
func openStore(t *testing.T, driver string) store.Driver {
	t.Helper()
	var d store.Driver
	switch driver {
	case "postgres":
		pg, err := postgres.Open(context.Background(), testdb.Schema(t))
		require.NoError(t, err)
		d = pg
	case "sqlite":
		lite, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "herald.db"))
		require.NoError(t, err)
		d = lite
	default:
		t.Fatalf("unknown driver %q", driver)
	}
	t.Cleanup(func() { _ = d.Close() })
	require.NoError(t, d.Migrate(context.Background()))
	return d
}

// bundle is what a server test works with.
type bundle struct {
	srv    *ingest.Server
	http   *httptest.Server
	store  store.Driver // the driver itself, beneath any wrapper the test installed
	client *http.Client
}

type option func(*ingest.Config)

// setup serves a new Server over real HTTP on a fresh store. By default one
// event key (eventKey) is accepted and /v1 is open. Cleanup shuts down in
// production order: HTTP server, then Server.Close, then the store.
func setup(t *testing.T, driver string, opts ...option) *bundle {
	t.Helper()
	d := openStore(t, driver)
	cfg := ingest.Config{Store: d, EventKeys: []string{eventKey}}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := ingest.New(cfg)
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	client := &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: 256},
		// Only a guard against hangs, far above any healthy response time.
		Timeout: 2 * time.Minute,
	}
	t.Cleanup(client.CloseIdleConnections)
	return &bundle{srv: srv, http: ts, store: d, client: client}
}

// commitTimeout gives group commits time enough that a slow, shared test
// machine never turns them into 503s.
func commitTimeout(c *ingest.Config) { c.CommitTimeout = 2 * time.Minute }

type response struct {
	status int
	header http.Header
	body   []byte
}

// send performs one request. It never fails the test, so goroutines may use it.
func (b *bundle) send(ctx context.Context, method, path string, body io.Reader, header http.Header) (response, error) {
	req, err := http.NewRequestWithContext(ctx, method, b.http.URL+path, body)
	if err != nil {
		return response{}, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: data}, err
}

func (b *bundle) do(t *testing.T, method, path string, body io.Reader, header http.Header) response {
	t.Helper()
	r, err := b.send(t.Context(), method, path, body, header)
	require.NoError(t, err)
	return r
}

func (b *bundle) get(t *testing.T, path string) response {
	t.Helper()
	return b.do(t, http.MethodGet, path, nil, nil)
}

func (b *bundle) postTo(t *testing.T, key, body string) response {
	t.Helper()
	return b.do(t, http.MethodPost, "/e/"+url.PathEscape(key), strings.NewReader(body), http.Header{"Content-Type": {"application/json"}})
}

func (b *bundle) post(t *testing.T, body string) response {
	t.Helper()
	return b.postTo(t, eventKey, body)
}

// ingest posts body, requires it accepted and returns the ids.
func (b *bundle) ingest(t *testing.T, body string) []string {
	t.Helper()
	return requireAccepted(t, b.post(t, body))
}

func requireAccepted(t *testing.T, r response) []string {
	t.Helper()
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
	var got struct {
		IDs    []string `json:"ids"`
		Status int      `json:"status"`
	}
	require.NoError(t, strictUnmarshal(r.body, &got), "body: %s", r.body)
	require.Equal(t, http.StatusOK, got.Status)
	require.NotEmpty(t, got.IDs)
	return got.IDs
}

// requireError checks that r is Herald's JSON error with the given status and
// that its message contains every part.
func requireError(t *testing.T, r response, status int, parts ...string) {
	t.Helper()
	require.Equal(t, status, r.status, "body: %s", r.body)
	require.Contains(t, r.header.Get("Content-Type"), "application/json")
	var got struct {
		Status int    `json:"status"`
		Error  string `json:"error"`
	}
	require.NoError(t, strictUnmarshal(r.body, &got), "body: %s", r.body)
	require.Equal(t, status, got.Status)
	require.NotEmpty(t, got.Error)
	for _, p := range parts {
		require.Contains(t, got.Error, p)
	}
}

func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// getEvent fetches one event through GET /v1/events/{id}.
func (b *bundle) getEvent(t *testing.T, id string) ingest.EventJSON {
	t.Helper()
	r := b.get(t, "/v1/events/"+url.PathEscape(id))
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
	var got struct {
		Data ingest.EventJSON `json:"data"`
	}
	require.NoError(t, strictUnmarshal(r.body, &got), "body: %s", r.body)
	return got.Data
}

type listPage struct {
	Data   []ingest.EventJSON `json:"data"`
	Cursor string             `json:"cursor"`
}

func (b *bundle) list(t *testing.T, q url.Values) listPage {
	t.Helper()
	r := b.get(t, "/v1/events?"+q.Encode())
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
	var page listPage
	require.NoError(t, strictUnmarshal(r.body, &page), "body: %s", r.body)
	return page
}

// listAll follows the cursor through every page of a listing and returns the
// events' ids in listing order, checking that only the last page is short.
func (b *bundle) listAll(t *testing.T, q url.Values) []string {
	t.Helper()
	q = maps.Clone(q)
	if q == nil {
		q = url.Values{}
	}
	ids := []string{}
	for pages := 0; ; pages++ {
		require.Less(t, pages, 1000, "cursor does not terminate")
		page := b.list(t, q)
		for _, e := range page.Data {
			ids = append(ids, e.ID)
		}
		if page.Cursor == "" {
			return ids
		}
		want := store.DefaultListLimit
		if l := q.Get("limit"); l != "" {
			want, _ = strconv.Atoi(l)
		}
		require.Len(t, page.Data, want, "only the last page may be short")
		q.Set("cursor", page.Cursor)
	}
}

// metric scrapes /metrics and returns the value of one series, written as it
// appears in the exposition format: `name` or `name{label="value",...}`.
func (b *bundle) metric(t *testing.T, series string) float64 {
	t.Helper()
	// The serve-mode setups' signing key; ignored where none is set.
	r := b.do(t, http.MethodGet, "/metrics", nil, http.Header{"Authorization": {"Bearer " + authSigningKey}})
	require.Equal(t, http.StatusOK, r.status)
	v, ok := metricValue(string(r.body), series)
	require.True(t, ok, "series %s not in /metrics:\n%s", series, r.body)
	return v
}

func metricValue(text, series string) (float64, bool) {
	for line := range strings.Lines(text) {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), series+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		return v, err == nil
	}
	return 0, false
}

// gate holds every InsertEvents until opened, so a test rather than the
// scheduler decides which requests a group commit carries.
type gate struct {
	store.Driver
	opened  chan struct{}
	once    sync.Once
	arrived atomic.Int64 // events that have reached InsertEvents
}

// newGate returns a closed gate. Tests register t.Cleanup(g.open) after setup,
// so on failure it opens before Server.Close waits for the flushers.
func newGate() *gate { return &gate{opened: make(chan struct{})} }

// install wraps the configured store.
func (g *gate) install(c *ingest.Config) {
	g.Driver = c.Store
	c.Store = g
}

func (g *gate) open() { g.once.Do(func() { close(g.opened) }) }

func (g *gate) InsertEvents(ctx context.Context, events []store.Event, dedupeSince time.Time) ([]bool, error) {
	g.arrived.Add(int64(len(events)))
	select {
	case <-g.opened:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Driver.InsertEvents(ctx, events, dedupeSince)
}

// postConcurrently sends one single-event request per id, all at once, and
// returns each request's response and error, in ids order, and a function
// that waits for all of them. An empty id asks the server to assign one.
func (b *bundle) postConcurrently(ids []string, name string) ([]response, []error, func()) {
	responses := make([]response, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			body := fmt.Sprintf(`{"name":%q,"id":%q}`, name, id)
			responses[i], errs[i] = b.send(context.Background(), http.MethodPost, "/e/"+eventKey, strings.NewReader(body), nil)
		})
	}
	return responses, errs, wg.Wait
}

// requireAllAccepted checks every concurrent request was acknowledged with its
// own id (or a fresh ULID where it sent none) and returns the acknowledged ids.
func requireAllAccepted(t *testing.T, ids []string, responses []response, errs []error) []string {
	t.Helper()
	acked := make([]string, len(ids))
	for i := range ids {
		require.NoError(t, errs[i])
		got := requireAccepted(t, responses[i])
		require.Len(t, got, 1)
		if ids[i] == "" {
			requireULID(t, got[0])
		} else {
			require.Equal(t, ids[i], got[0])
		}
		acked[i] = got[0]
	}
	return acked
}

func numberedIDs(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return ids
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	stub := struct{ store.Driver }{}

	_, err := ingest.New(ingest.Config{EventKeys: []string{"k"}})
	require.ErrorContains(t, err, "Store is required")

	_, err = ingest.New(ingest.Config{Store: stub})
	require.ErrorContains(t, err, "event key is required")

	_, err = ingest.New(ingest.Config{Store: stub, EventKeys: []string{"k", ""}})
	require.ErrorContains(t, err, "must not be empty")
}

func TestIngestSingleEvent(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		b := setup(t, driver)

		before := time.Now().UTC().Truncate(time.Millisecond)
		r := b.post(t, `{"name":"demo/user.signup","data":{"plan":"pro","seats":3,"tags":["a","ż"]},"ts":1714564800123,"v":"2024-01-01.1"}`)
		after := time.Now().UTC()
		ids := requireAccepted(t, r)
		require.Len(t, ids, 1)
		requireULID(t, ids[0])
		require.JSONEq(t, fmt.Sprintf(`{"ids":[%q],"status":200}`, ids[0]), string(r.body))

		// The REST shape carries exactly these fields.
		raw := b.get(t, "/v1/events/"+ids[0])
		require.Equal(t, http.StatusOK, raw.status)
		var shape struct {
			Data map[string]json.RawMessage `json:"data"`
		}
		require.NoError(t, json.Unmarshal(raw.body, &shape))
		require.ElementsMatch(t, []string{"id", "name", "data", "ts", "v", "received_at"}, slices.Collect(maps.Keys(shape.Data)))

		e := b.getEvent(t, ids[0])
		require.Equal(t, ids[0], e.ID)
		require.Equal(t, "demo/user.signup", e.Name)
		require.JSONEq(t, `{"plan":"pro","seats":3,"tags":["a","ż"]}`, string(e.Data))
		require.Equal(t, int64(1714564800123), e.TS)
		require.Equal(t, "2024-01-01.1", e.V)
		require.False(t, e.ReceivedAt.Before(before), "received_at %v before the request (%v)", e.ReceivedAt, before)
		require.False(t, e.ReceivedAt.After(after), "received_at %v after the response (%v)", e.ReceivedAt, after)
		require.True(t, e.ReceivedAt.Equal(e.ReceivedAt.Truncate(time.Millisecond)), "received_at is whole milliseconds")

		// The defaults: empty data, ts is the receive time, no version.
		bare := b.getEvent(t, b.ingest(t, `{"name":"demo/bare"}`)[0])
		require.Equal(t, "demo/bare", bare.Name)
		require.JSONEq(t, `{}`, string(bare.Data))
		require.Equal(t, bare.ReceivedAt.UnixMilli(), bare.TS)
		require.Empty(t, bare.V)
	})
}

func TestIngestArrayKeepsRequestOrder(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ids := b.ingest(t, `[
			{"name":"order/0","id":"client-0"},
			{"name":"order/1"},
			{"name":"order/2","id":"client-2","data":{"n":2}},
			{"name":"order/3"},
			{"name":"order/4"}
		]`)
		require.Len(t, ids, 5)
		require.Equal(t, "client-0", ids[0])
		require.Equal(t, "client-2", ids[2])
		for _, i := range []int{1, 3, 4} {
			requireULID(t, ids[i])
		}
		require.Len(t, slices.Compact(slices.Sorted(slices.Values(ids))), 5, "ids are distinct")
		for i, id := range ids {
			require.Equal(t, fmt.Sprintf("order/%d", i), b.getEvent(t, id).Name)
		}
		require.ElementsMatch(t, ids, b.listAll(t, nil))
	})
}

func TestIngestClientIDEchoed(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		b := setup(t, driver)
		const id = "order-42 żółw"
		require.Equal(t, []string{id}, b.ingest(t, `{"name":"shop/order.placed","id":"order-42 \u017c\u00f3\u0142w"}`))
		e := b.getEvent(t, id)
		require.Equal(t, id, e.ID)
		require.Equal(t, "shop/order.placed", e.Name)
	})
}

func TestIngestDuplicateAcrossRequests(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		b := setup(t, driver)
		require.Equal(t, []string{"dup-1"}, b.ingest(t, `{"id":"dup-1","name":"dup/first","data":{"n":1},"ts":1714564800001}`))
		require.Equal(t, 1.0, b.metric(t, "herald_events_accepted_total"))
		require.Equal(t, 0.0, b.metric(t, "herald_events_deduplicated_total"))
		first := b.getEvent(t, "dup-1")

		// A retry with the same id is acknowledged but changes nothing.
		require.Equal(t, []string{"dup-1"}, b.ingest(t, `{"id":"dup-1","name":"dup/second","data":{"n":2},"ts":1714564800002,"v":"2"}`))
		require.Equal(t, first, b.getEvent(t, "dup-1"), "the first event wins")
		require.Equal(t, "dup/first", first.Name)
		require.JSONEq(t, `{"n":1}`, string(first.Data))
		require.Equal(t, 1.0, b.metric(t, "herald_events_accepted_total"))
		require.Equal(t, 1.0, b.metric(t, "herald_events_deduplicated_total"))

		// A request holding a duplicate, a new keyed event and an event without
		// an id (Postgres writes those two kinds differently) stores only the new.
		ids := b.ingest(t, `[{"id":"dup-1","name":"dup/third"},{"id":"new-1","name":"dup/new"},{"name":"dup/fresh"}]`)
		require.Len(t, ids, 3)
		require.Equal(t, []string{"dup-1", "new-1"}, ids[:2])
		requireULID(t, ids[2])
		require.Equal(t, first, b.getEvent(t, "dup-1"))
		require.Equal(t, "dup/fresh", b.getEvent(t, ids[2]).Name)
		require.Equal(t, 3.0, b.metric(t, "herald_events_accepted_total"))
		require.Equal(t, 2.0, b.metric(t, "herald_events_deduplicated_total"))
		listed := b.listAll(t, nil)
		require.ElementsMatch(t, []string{"dup-1", "new-1", ids[2]}, listed)
		require.Equal(t, "dup-1", listed[len(listed)-1], "the first event is still the oldest")
	})
}

func TestIngestDuplicateWithinRequest(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ids := b.ingest(t, `[
			{"id":"same","name":"within/first","data":{"n":1}},
			{"id":"same","name":"within/second","data":{"n":2}},
			{"id":"other","name":"within/other"}
		]`)
		require.Equal(t, []string{"same", "same", "other"}, ids)
		e := b.getEvent(t, "same")
		require.Equal(t, "within/first", e.Name, "the first occurrence wins")
		require.JSONEq(t, `{"n":1}`, string(e.Data))
		require.ElementsMatch(t, []string{"same", "other"}, b.listAll(t, nil))
		require.Equal(t, 2.0, b.metric(t, "herald_events_accepted_total"))
		require.Equal(t, 1.0, b.metric(t, "herald_events_deduplicated_total"))
	})
}

func TestIngestInvalidEventStoresNothing(t *testing.T) {
	t.Parallel()
	cases := []struct {
		body  string
		parts []string
	}{
		{`[{"name":"ok/0","id":"keep-0"},{"name":"ok/1"},{"name":"herald/x"},{"name":"ok/3"}]`, []string{"event 2: name:", "reserved"}},
		{`[{"name":"ok/0","id":"keep-0"},{"name":"ok/1","data":[1]}]`, []string{"event 1: data:", "JSON object"}},
		{`[{"name":"ok/0","id":"keep-0"},{"name":"ok/1","ts":"yesterday"}]`, []string{"event 1: ts:", "integer"}},
		{`[{"name":"ok/0","id":"keep-0"},{"name":"ok/1","id":7}]`, []string{"event 1: id:", "string"}},
		{`[{"name":"ok/0","id":"keep-0"},{"name":"ok/1","data":{"s":"\u0000"}}]`, []string{"event 1: data:", `\u0000`}},
		{`[{"name":"ok/0","id":"keep-0"},{}]`, []string{"event 1: name:", "required"}},
		{`[{"name":"ok/0","id":"keep-0"},17]`, []string{"event 1:", "JSON object"}},
		{`{"name":"ok/0","id":"keep-0","v":3}`, []string{"event 0: v:", "string"}},
		{`[{"name":"ok/0","id":"keep-0"}`, []string{"not valid JSON"}},
		{``, []string{"empty"}},
	}
	forEachDriver(t, func(t *testing.T, driver string) {
		b := setup(t, driver)
		for _, tc := range cases {
			requireError(t, b.post(t, tc.body), http.StatusBadRequest, tc.parts...)
		}
		require.Empty(t, b.listAll(t, nil), "no event of a refused request is stored")
		r := b.get(t, "/v1/events/keep-0")
		requireError(t, r, http.StatusNotFound)
		require.Equal(t, float64(len(cases)), b.metric(t, `herald_events_rejected_total{reason="invalid"}`))
		require.Equal(t, 0.0, b.metric(t, "herald_events_accepted_total"))
	})
}

// unsized hides a body's length, so the client sends it chunked and only the
// server's reading limit can catch it.
type unsized struct{ io.Reader }

func TestIngestBodyTooLarge(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		const limit = 1024
		b := setup(t, driver, func(c *ingest.Config) { c.Limits.MaxBodyBytes = limit })

		// Exactly at the limit is fine.
		atLimit := strings.Replace(sized(limit), `"name":"a"`, `"name":"b"`, 1)
		require.Len(t, atLimit, limit)
		b.ingest(t, atLimit)

		// Declared too large: refused before reading.
		r := b.post(t, sized(limit+1))
		requireError(t, r, http.StatusRequestEntityTooLarge, "larger than 1024 bytes")

		// Chunked, so the length is only discovered while reading.
		r = b.do(t, http.MethodPost, "/e/"+eventKey, unsized{strings.NewReader(sized(4 * limit))}, nil)
		requireError(t, r, http.StatusRequestEntityTooLarge, "larger than 1024 bytes")

		// Too large also when the extra bytes are only whitespace.
		r = b.do(t, http.MethodPost, "/e/"+eventKey, unsized{strings.NewReader(`{"name":"c"}` + strings.Repeat(" ", limit))}, nil)
		requireError(t, r, http.StatusRequestEntityTooLarge)

		page := b.list(t, nil)
		require.Len(t, page.Data, 1)
		require.Equal(t, "b", page.Data[0].Name)
		require.Equal(t, 3.0, b.metric(t, `herald_events_rejected_total{reason="too_large"}`))
	})
}

func TestIngestEventKeys(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		t.Run("configured keys", func(t *testing.T) {
			b := setup(t, driver, func(c *ingest.Config) { c.EventKeys = []string{"key-a", "key-b"} })
			requireAccepted(t, b.postTo(t, "key-a", `{"name":"keys/a"}`))
			requireAccepted(t, b.postTo(t, "key-b", `{"name":"keys/b"}`))
			for _, key := range []string{"key-c", "key-", "key-aa", "KEY-A", eventKey} {
				requireError(t, b.postTo(t, key, `{"name":"keys/unknown"}`), http.StatusUnauthorized, "unknown event key")
			}
			require.Equal(t, 5.0, b.metric(t, `herald_events_rejected_total{reason="unauthorized"}`))
			require.Len(t, b.listAll(t, nil), 2)
		})
		t.Run("any key", func(t *testing.T) {
			b := setup(t, driver, func(c *ingest.Config) {
				c.EventKeys = nil
				c.AllowAnyEventKey = true
			})
			for _, key := range []string{"anything", "x", "dev key ż"} {
				requireAccepted(t, b.postTo(t, key, `{"name":"keys/any"}`))
			}
			require.Len(t, b.listAll(t, nil), 3)
		})
	})
}

func TestRESTSigningKey(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		const key = "sign-secret"
		b := setup(t, driver, func(c *ingest.Config) { c.SigningKey = key })

		// Intake is authorized by the event key alone.
		id := b.ingest(t, `{"name":"signed/x"}`)[0]

		auth := func(v string) http.Header { return http.Header{"Authorization": {v}} }
		for _, path := range []string{"/v1/events", "/v1/events/" + id} {
			requireError(t, b.do(t, http.MethodGet, path, nil, nil), http.StatusUnauthorized, "missing signing key")
			requireError(t, b.do(t, http.MethodGet, path, nil, auth("Bearer ")), http.StatusUnauthorized, "missing signing key")
			requireError(t, b.do(t, http.MethodGet, path, nil, auth("Basic "+key)), http.StatusUnauthorized, "missing signing key")
			requireError(t, b.do(t, http.MethodGet, path, nil, auth(key)), http.StatusUnauthorized, "missing signing key")
			requireError(t, b.do(t, http.MethodGet, path, nil, auth("Bearer wrong")), http.StatusUnauthorized, "invalid signing key")
			requireError(t, b.do(t, http.MethodGet, path, nil, auth("Bearer "+key+"x")), http.StatusUnauthorized, "invalid signing key")
			r := b.do(t, http.MethodGet, path, nil, auth("Bearer "+key))
			require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
			require.Contains(t, string(r.body), id)
		}

		// Health endpoints stay open; metrics need the key.
		for _, path := range []string{"/healthz", "/readyz"} {
			require.Equal(t, http.StatusOK, b.get(t, path).status, path)
		}
		requireError(t, b.get(t, "/metrics"), http.StatusUnauthorized, "missing signing key")
		require.Equal(t, http.StatusOK, b.do(t, http.MethodGet, "/metrics", nil, auth("Bearer "+key)).status)
	})
}

func TestListEventsPagination(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		b := setup(t, driver)
		const n = 23
		var newestFirst, oddNewestFirst []string
		for i := range n {
			name := "page/even"
			if i%2 == 1 {
				name = "page/odd"
			}
			// One request each, so every event is its own, later commit.
			id := b.ingest(t, fmt.Sprintf(`{"name":%q,"id":"p%02d"}`, name, i))[0]
			newestFirst = append([]string{id}, newestFirst...)
			if i%2 == 1 {
				oddNewestFirst = append([]string{id}, oddNewestFirst...)
			}
		}

		for _, limit := range []string{"1", "5", "22", "23", "100"} {
			require.Equal(t, newestFirst, b.listAll(t, url.Values{"limit": {limit}}), "limit %s", limit)
		}
		require.Equal(t, newestFirst, b.listAll(t, nil), "default limit")

		page := b.list(t, url.Values{"limit": {"5"}})
		require.Len(t, page.Data, 5)
		require.NotEmpty(t, page.Cursor)
		page = b.list(t, url.Values{"limit": {"23"}})
		require.Len(t, page.Data, n)
		require.Empty(t, page.Cursor, "no cursor when the page holds the rest")

		require.Equal(t, oddNewestFirst, b.listAll(t, url.Values{"name": {"page/odd"}, "limit": {"4"}}))
		require.Len(t, b.listAll(t, url.Values{"name": {"page/even"}, "limit": {"5"}}), 12)

		none := b.get(t, "/v1/events?name=page/none")
		require.Equal(t, http.StatusOK, none.status)
		require.JSONEq(t, `{"data":[],"cursor":""}`, string(none.body), "an empty listing is an empty array")
	})
}

func TestListEventsTimeFilters(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		b := setup(t, driver)
		// postApart ingests one event and waits until the clock has left its
		// receive millisecond, so each event gets its own received_at.
		postApart := func(name string) ingest.EventJSON {
			e := b.getEvent(t, b.ingest(t, fmt.Sprintf(`{"name":%q}`, name))[0])
			for !time.Now().Truncate(time.Millisecond).After(e.ReceivedAt) {
				time.Sleep(time.Millisecond)
			}
			return e
		}
		a, m, z := postApart("win/a"), postApart("win/m"), postApart("win/z")

		rfc := func(e ingest.EventJSON) string { return e.ReceivedAt.Format(time.RFC3339Nano) }
		ms := func(e ingest.EventJSON) string { return strconv.FormatInt(e.ReceivedAt.UnixMilli(), 10) }
		plus2 := time.FixedZone("+02:00", 2*60*60)

		tests := []struct {
			query url.Values
			want  []string
		}{
			{url.Values{"received_after": {rfc(a)}}, []string{z.ID, m.ID}},
			{url.Values{"received_after": {ms(a)}}, []string{z.ID, m.ID}},
			{url.Values{"received_after": {a.ReceivedAt.In(plus2).Format(time.RFC3339Nano)}}, []string{z.ID, m.ID}},
			{url.Values{"received_before": {ms(z)}}, []string{m.ID, a.ID}},
			{url.Values{"received_before": {rfc(z)}}, []string{m.ID, a.ID}},
			{url.Values{"received_after": {ms(a)}, "received_before": {rfc(z)}}, []string{m.ID}},
			{url.Values{"received_after": {rfc(z)}}, []string{}},
			{url.Values{"received_before": {rfc(a)}}, []string{}},
			{url.Values{"received_after": {"2000-01-01T00:00:00Z"}}, []string{z.ID, m.ID, a.ID}},
			{url.Values{"received_before": {"2000-01-01T00:00:00Z"}}, []string{}},
			{url.Values{"received_after": {ms(a)}, "name": {"win/z"}}, []string{z.ID}},
			{url.Values{"received_after": {ms(a)}, "name": {"win/a"}}, []string{}},
			{url.Values{"received_after": {"0"}, "limit": {"1"}}, []string{z.ID, m.ID, a.ID}},
		}
		for _, tc := range tests {
			require.Equal(t, tc.want, b.listAll(t, tc.query), "query %s", tc.query.Encode())
		}
	})
}

func TestListEventsBadParams(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		b := setup(t, driver)
		b.ingest(t, `{"name":"bad/params"}`)
		tests := []struct {
			query string
			part  string
		}{
			{"limit=0", "limit"},
			{"limit=101", "limit"},
			{"limit=-1", "limit"},
			{"limit=abc", "limit"},
			{"limit=1.5", "limit"},
			{"received_after=yesterday", "received_after"},
			{"received_after=2026-05-01", "received_after"},
			{"received_before=2026-13-01T00:00:00Z", "received_before"},
			{"cursor=garbage!", "cursor"},
			{"cursor=" + url.QueryEscape("czEyMw=="), "cursor"},
			{"cursor=" + url.QueryEscape(store.EncodeCursor(5)[:2]), "cursor"},
			{"cursor=" + url.QueryEscape(store.EncodeCursor(0)), "cursor"},
		}
		for _, tc := range tests {
			requireError(t, b.get(t, "/v1/events?"+tc.query), http.StatusBadRequest, tc.part)
		}
		require.Len(t, b.list(t, url.Values{"limit": {"1"}}).Data, 1)
		require.Len(t, b.list(t, url.Values{"limit": {"100"}}).Data, 1)
	})
}

func TestGetEventMissing(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		b := setup(t, driver)
		requireError(t, b.get(t, "/v1/events/missing"), http.StatusNotFound, `no event with id "missing"`)
	})
}

func TestUnknownRouteAndMethod(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		b := setup(t, driver)
		requireError(t, b.get(t, "/nope"), http.StatusNotFound, "no route for GET /nope")
		requireError(t, b.do(t, http.MethodPost, "/v1/nope", nil, nil), http.StatusNotFound, "no route for POST /v1/nope")
		requireError(t, b.get(t, "/e/"+eventKey), http.StatusMethodNotAllowed, "method GET is not allowed on /e/"+eventKey)
		requireError(t, b.do(t, http.MethodDelete, "/v1/events", nil, nil), http.StatusMethodNotAllowed, "DELETE")
		requireError(t, b.do(t, http.MethodPut, "/v1/events/x", strings.NewReader("{}"), nil), http.StatusMethodNotAllowed, "PUT")
		requireError(t, b.do(t, http.MethodPost, "/healthz", nil, nil), http.StatusMethodNotAllowed, "POST")
		require.GreaterOrEqual(t, b.metric(t, `herald_http_request_duration_seconds_count{code="404",method="GET",route="unmatched"}`), 1.0)
	})
}

func TestHealthAndReady(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		b := setup(t, driver)
		r := b.get(t, "/healthz")
		require.Equal(t, http.StatusOK, r.status)
		require.JSONEq(t, `{"status":"ok"}`, string(r.body))

		r = b.get(t, "/readyz")
		require.Equal(t, http.StatusOK, r.status)
		require.JSONEq(t, `{"status":"ok","checks":{"store":"ok"}}`, string(r.body))
	})
}

func TestReadyReportsFailingCheck(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		b := setup(t, driver, func(c *ingest.Config) {
			c.ReadyChecks = map[string]func(context.Context) error{
				"router": func(context.Context) error { return nil },
				"worker": func(context.Context) error { return fmt.Errorf("worker pool not started") },
			}
		})
		r := b.get(t, "/readyz")
		require.Equal(t, http.StatusServiceUnavailable, r.status)
		// The reason is logged, not shown: /readyz is public.
		require.JSONEq(t, `{"status":"unavailable","checks":{"store":"ok","router":"ok","worker":"unavailable"}}`, string(r.body))

		// Not ready is not unhealthy.
		require.Equal(t, http.StatusOK, b.get(t, "/healthz").status)

		// A load balancer asks about the store only: events can be accepted.
		r = b.get(t, "/readyz?check=store")
		require.Equal(t, http.StatusOK, r.status)
		require.JSONEq(t, `{"status":"ok","checks":{"store":"ok"}}`, string(r.body))
		r = b.get(t, "/readyz?check=store&check=worker")
		require.Equal(t, http.StatusServiceUnavailable, r.status)
		r = b.get(t, "/readyz?check=nope")
		require.Equal(t, http.StatusBadRequest, r.status)
		require.Contains(t, string(r.body), "router, store, worker")
	})
}

// A check that hangs until the deadline does not make the others fail: the
// checks run at once. "a" and "b" each wait for the other to have started,
// so run one after the other they would both time out.
func TestReadyChecksDoNotShareTheirWait(t *testing.T) {
	t.Parallel()
	aStarted, bStarted := make(chan struct{}), make(chan struct{})
	meet := func(mine, other chan struct{}) func(context.Context) error {
		return func(ctx context.Context) error {
			close(mine)
			select {
			case <-other:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	b := setup(t, "sqlite", func(c *ingest.Config) {
		c.ReadyChecks = map[string]func(context.Context) error{
			"hangs": func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() },
			"a":     meet(aStarted, bStarted),
			"b":     meet(bStarted, aStarted),
		}
	})
	r := b.get(t, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, r.status)
	require.JSONEq(t, `{"status":"unavailable","checks":{"store":"ok","a":"ok","b":"ok","hangs":"unavailable"}}`, string(r.body))
}

func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		t.Run("default registry", func(t *testing.T) {
			b := setup(t, driver)
			b.ingest(t, `[{"name":"m/a"},{"name":"m/b"}]`)
			require.Equal(t, http.StatusOK, b.get(t, "/healthz").status)

			r := b.get(t, "/metrics")
			require.Equal(t, http.StatusOK, r.status)
			text := string(r.body)
			for _, name := range []string{
				"herald_events_accepted_total",
				"herald_events_deduplicated_total",
				"herald_http_request_duration_seconds",
				"herald_ingest_commit_events",
				"herald_ingest_commit_requests",
				"herald_ingest_commit_duration_seconds",
				"herald_ingest_commit_errors_total",
				"go_goroutines",
			} {
				require.Contains(t, text, "\n# TYPE "+name+" ", name)
			}
			requireSeries := func(series string, want float64) {
				t.Helper()
				v, ok := metricValue(text, series)
				require.True(t, ok, "series %s missing", series)
				require.Equal(t, want, v, series)
			}
			requireSeries("herald_events_accepted_total", 2)
			requireSeries("herald_ingest_commit_events_count", 1)
			requireSeries("herald_ingest_commit_events_sum", 2)
			requireSeries("herald_ingest_commit_requests_sum", 1)
			requireSeries(`herald_http_request_duration_seconds_count{code="200",method="POST",route="/e/:key"}`, 1)
			requireSeries(`herald_http_request_duration_seconds_count{code="200",method="GET",route="/healthz"}`, 1)
		})
		t.Run("given registry", func(t *testing.T) {
			reg := prometheus.NewRegistry()
			b := setup(t, driver, func(c *ingest.Config) { c.Metrics = reg })
			b.ingest(t, `{"name":"m/a"}`)
			require.Equal(t, 1.0, b.metric(t, "herald_events_accepted_total"))
			require.NotContains(t, string(b.get(t, "/metrics").body), "go_goroutines", "only the given registry is served")
			families, err := reg.Gather()
			require.NoError(t, err)
			var names []string
			for _, f := range families {
				names = append(names, f.GetName())
			}
			require.Contains(t, names, "herald_events_accepted_total")
		})
	})
}

// TestGroupCommitConcurrentRequests fires concurrent requests at a real store.
// How they split into commits is up to the scheduler, so only what is
// deterministic is checked: every request is acknowledged, stored, and counted
// exactly once by the commit histograms.
func TestGroupCommitConcurrentRequests(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		b := setup(t, driver, commitTimeout)
		const n = 200
		ids := numberedIDs("load", n)
		for i := range ids {
			if i%2 == 1 {
				ids[i] = "" // half the events get a server-generated id
			}
		}
		responses, errs, wait := b.postConcurrently(ids, "load/x")
		wait()
		acked := requireAllAccepted(t, ids, responses, errs)
		require.ElementsMatch(t, acked, b.listAll(t, url.Values{"limit": {"100"}}))

		commits := b.metric(t, "herald_ingest_commit_requests_count")
		require.Equal(t, float64(n), b.metric(t, "herald_ingest_commit_requests_sum"), "every request is in exactly one commit")
		require.Equal(t, float64(n), b.metric(t, "herald_ingest_commit_events_sum"))
		require.Equal(t, commits, b.metric(t, "herald_ingest_commit_events_count"))
		require.GreaterOrEqual(t, commits, 1.0)
		require.LessOrEqual(t, commits, float64(n))
		require.Equal(t, float64(n), b.metric(t, "herald_events_accepted_total"))
		require.Equal(t, 0.0, b.metric(t, "herald_ingest_commit_errors_total"))
		t.Logf("%d requests in %v commits", n, commits)
	})
}

// TestGroupCommitBatchesQueuedRequests holds the store while requests arrive,
// so it can assert that queued requests share commits.
func TestGroupCommitBatchesQueuedRequests(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		const flushers = 4
		g := newGate()
		b := setup(t, driver, g.install, commitTimeout, func(c *ingest.Config) { c.Flushers = flushers })
		t.Cleanup(g.open)

		const n = 200
		ids := numberedIDs("batch", n)
		responses, errs, wait := b.postConcurrently(ids, "batch/x")
		// Every request is either inside a held commit or queued behind one.
		require.Eventually(t, func() bool {
			return g.arrived.Load()+int64(b.srv.QueuedCommits()) == n
		}, 2*time.Minute, time.Millisecond)
		g.open()
		wait()

		requireAllAccepted(t, ids, responses, errs)
		require.ElementsMatch(t, ids, b.listAll(t, url.Values{"limit": {"100"}}))

		// Each flusher wrote its held commit, then at most one commit drained
		// from the queue, which was complete by then.
		commits := b.metric(t, "herald_ingest_commit_requests_count")
		require.LessOrEqual(t, commits, float64(2*flushers))
		require.Less(t, commits, float64(n), "queued requests share commits")
		require.Equal(t, float64(n), b.metric(t, "herald_ingest_commit_requests_sum"))
		require.Equal(t, float64(n), b.metric(t, "herald_ingest_commit_events_sum"))
	})
}

// TestStoreRefusedDataIsIsolated sends requests whose data Postgres would
// refuse while a good request waits for a group commit: they are refused at
// validation on both drivers, and only the good events are stored. One bad
// event has a client id and one has none, since Postgres writes those two
// kinds by different statements.
func TestStoreRefusedDataIsIsolated(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		g := newGate()
		b := setup(t, driver, g.install, commitTimeout, func(c *ingest.Config) { c.Flushers = 1 })
		t.Cleanup(g.open)

		post := func(body string) func() (response, error) {
			var (
				r   response
				err error
			)
			done := make(chan struct{})
			go func() {
				defer close(done)
				r, err = b.send(context.Background(), http.MethodPost, "/e/"+eventKey, strings.NewReader(body), nil)
			}()
			return func() (response, error) { <-done; return r, err }
		}

		// Hold the only flusher on a first commit, so the next two requests
		// are written together.
		warmup := post(`{"name":"iso/warmup","id":"warmup"}`)
		require.Eventually(t, func() bool { return g.arrived.Load() == 1 }, 2*time.Minute, time.Millisecond)
		// Data Postgres jsonb would refuse (a lone surrogate, a number its
		// numeric cannot hold) is refused at validation, before any commit.
		poisons := []func() (response, error){
			post(`{"name":"iso/poison-keyed","id":"poison","data":{"s":"\ud800"}}`),
			post(`{"name":"iso/poison-fresh","data":{"n":1e-20000}}`),
		}
		for _, poison := range poisons {
			r, err := poison()
			require.NoError(t, err)
			requireError(t, r, http.StatusBadRequest, "event 0: data: must not")
		}
		good := post(`{"name":"iso/good","id":"good"}`)
		require.Eventually(t, func() bool { return b.srv.QueuedCommits() == 1 }, 2*time.Minute, time.Millisecond)
		g.open()

		for _, wait := range []func() (response, error){warmup, good} {
			r, err := wait()
			require.NoError(t, err)
			requireAccepted(t, r)
		}
		names := []string{"iso/good", "iso/warmup"}
		require.Equal(t, 2.0, b.metric(t, `herald_events_rejected_total{reason="invalid"}`))
		var stored []string
		for _, e := range b.list(t, nil).Data {
			stored = append(stored, e.Name)
		}
		require.ElementsMatch(t, names, stored)
	})
}

func TestStoreDown(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		// A long commit timeout: a store that hangs rather than fails would
		// run into the request deadline below instead of turning into a 503.
		b := setup(t, driver, commitTimeout)
		id := b.ingest(t, `{"name":"down/before"}`)[0]
		require.NoError(t, b.store.Close())

		send := func(method, path, body string) response {
			t.Helper()
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			var rd io.Reader
			if body != "" {
				rd = strings.NewReader(body)
			}
			r, err := b.send(ctx, method, path, rd, nil)
			require.NoError(t, err, "%s %s must fail fast, not hang", method, path)
			return r
		}

		r := send(http.MethodPost, "/e/"+eventKey, `{"name":"down/after"}`)
		requireError(t, r, http.StatusServiceUnavailable, "could not be stored", "retry")
		require.Equal(t, "1", r.header.Get("Retry-After"))
		r = send(http.MethodPost, "/e/"+eventKey, `[{"name":"down/a"},{"name":"down/b"}]`)
		requireError(t, r, http.StatusServiceUnavailable)

		r = send(http.MethodGet, "/v1/events", "")
		requireError(t, r, http.StatusServiceUnavailable, "store is unavailable")
		require.Equal(t, "1", r.header.Get("Retry-After"))
		requireError(t, send(http.MethodGet, "/v1/events/"+id, ""), http.StatusServiceUnavailable, "store is unavailable")

		r = send(http.MethodGet, "/readyz", "")
		require.Equal(t, http.StatusServiceUnavailable, r.status)
		var ready struct {
			Status string            `json:"status"`
			Checks map[string]string `json:"checks"`
		}
		require.NoError(t, json.Unmarshal(r.body, &ready))
		require.Equal(t, "unavailable", ready.Status)
		require.NotEqual(t, "ok", ready.Checks["store"])
		require.NotEmpty(t, ready.Checks["store"])

		require.Equal(t, http.StatusOK, send(http.MethodGet, "/healthz", "").status)
		require.Equal(t, 2.0, b.metric(t, `herald_events_rejected_total{reason="unavailable"}`))
		require.Equal(t, 2.0, b.metric(t, "herald_ingest_commit_errors_total"))
		_, ok := metricValue(string(b.get(t, "/metrics").body), `herald_http_request_duration_seconds_count{code="500",method="POST",route="/e/:key"}`)
		require.False(t, ok, "nothing panicked")
	})
}

// TestCloseFlushesQueuedCommits closes the server while requests wait in the
// committer: Close must write them, and only then return.
func TestCloseFlushesQueuedCommits(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		g := newGate()
		b := setup(t, driver, g.install, commitTimeout)
		t.Cleanup(g.open)

		const n = 12
		ids := numberedIDs("flush", n)
		responses, errs, wait := b.postConcurrently(ids, "flush/x")
		require.Eventually(t, func() bool {
			return g.arrived.Load()+int64(b.srv.QueuedCommits()) == n
		}, 2*time.Minute, time.Millisecond)

		closed := make(chan struct{})
		go func() {
			b.srv.Close()
			close(closed)
		}()
		require.Eventually(t, b.srv.Closing, 2*time.Minute, time.Millisecond)
		select {
		case <-closed:
			require.FailNow(t, "Close returned while commits were still held")
		default:
		}
		g.open()
		select {
		case <-closed:
		case <-time.After(2 * time.Minute):
			require.FailNow(t, "Close did not return after the store was released")
		}
		wait()

		requireAllAccepted(t, ids, responses, errs)
		require.ElementsMatch(t, ids, b.listAll(t, nil))

		// Once closed, intake refuses instead of hanging.
		requireError(t, b.post(t, `{"name":"flush/late","id":"late"}`), http.StatusServiceUnavailable, "retry")
		_, err := b.store.GetEvent(t.Context(), "late")
		require.ErrorIs(t, err, store.ErrNotFound)
	})
}

// TestShutdownUnderLoad shuts down as `herald serve` does, HTTP server first
// and then Server.Close, while clients keep sending: every acknowledged event
// is stored, and nothing is stored that no client sent.
func TestShutdownUnderLoad(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		b := setup(t, driver, commitTimeout)

		var (
			mu         sync.Mutex
			sent       = map[string]bool{}
			acked      []string
			badReplies []string
			wg         sync.WaitGroup
		)
		ackedCount := func() int {
			mu.Lock()
			defer mu.Unlock()
			return len(acked)
		}
		for w := range 4 {
			wg.Go(func() {
				for i := range 100_000 {
					id := fmt.Sprintf("shutdown-%d-%05d", w, i)
					mu.Lock()
					sent[id] = true
					mu.Unlock()
					body := fmt.Sprintf(`{"name":"shutdown/x","id":%q}`, id)
					r, err := b.send(context.Background(), http.MethodPost, "/e/"+eventKey, strings.NewReader(body), nil)
					if err != nil {
						return // the server is gone
					}
					mu.Lock()
					if r.status == http.StatusOK {
						acked = append(acked, id)
					} else {
						badReplies = append(badReplies, fmt.Sprintf("%s: %d %s", id, r.status, r.body))
					}
					mu.Unlock()
					if r.status != http.StatusOK {
						return
					}
				}
			})
		}
		require.Eventually(t, func() bool { return ackedCount() >= 40 }, 2*time.Minute, time.Millisecond)
		b.http.Close() // stops accepting and waits for requests in flight
		b.srv.Close()
		wg.Wait()

		require.Empty(t, badReplies, "requests in flight at shutdown are served, not refused")
		for _, id := range acked {
			_, err := b.store.GetEvent(t.Context(), id)
			require.NoError(t, err, "acknowledged event %s not stored", id)
		}
		stored := 0
		for f := (store.EventFilter{Limit: store.MaxListLimit}); ; {
			events, next, err := b.store.ListEvents(t.Context(), f)
			require.NoError(t, err)
			for _, e := range events {
				require.True(t, sent[e.ID], "stored event %s was never sent", e.ID)
			}
			stored += len(events)
			if next == "" {
				break
			}
			f.Cursor = next
		}
		require.GreaterOrEqual(t, stored, len(acked))
		t.Logf("%d acknowledged, %d stored, %d sent", len(acked), stored, len(sent))
	})
}
