package ingest_test

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/ingest"
	"github.com/herald-run/herald/store"
)

const (
	authSigningKey = "auth-signing-key"
	authEventKeyA  = "auth-event-key-a"
	authEventKeyB  = "auth-event-key-b"
)

// serveMode configures a server as `herald serve` does without --insecure:
// event keys, and a signing key on /v1.
func serveMode(c *ingest.Config) {
	c.SigningKey = authSigningKey
	c.EventKeys = []string{authEventKeyA, authEventKeyB}
}

type route struct{ method, path string }

func (r route) String() string { return r.method + " " + r.path }

// openRoutes are the routes served without the signing key: event intake,
// which checks its own key, webhook deliveries, which are authenticated by
// their signature, and the operational endpoints. Anything else must be
// under /v1.
var openRoutes = []route{
	{http.MethodPost, "/e/:key"},
	{http.MethodPost, "/w/:id"},
	{http.MethodGet, "/healthz"},
	{http.MethodHead, "/healthz"},
	{http.MethodGet, "/readyz"},
	{http.MethodHead, "/readyz"},
}

// v1Routes lists the routes behind the signing key that the server's gin
// engine serves (every /v1 route, and /metrics), so a route added later is
// covered without editing this test. It fails if another route is not one
// of openRoutes, and if well-known signed routes are missing, so the tests
// using it cannot pass on an empty list.
func v1Routes(t *testing.T, srv *ingest.Server) []route {
	t.Helper()
	var v1 []route
	for _, ri := range srv.Engine().Routes() {
		r := route{ri.Method, ri.Path}
		if strings.HasPrefix(ri.Path, "/v1/") || ri.Path == "/v1" || ri.Path == "/metrics" || strings.HasPrefix(ri.Path, "/debug/pprof/") {
			v1 = append(v1, r)
			continue
		}
		require.Contains(t, openRoutes, r, "%s is served without the signing key; put it under /v1 or add it to openRoutes", r)
	}
	for _, known := range []route{
		{http.MethodGet, "/v1/events"},
		{http.MethodPost, "/v1/events"},
		{http.MethodGet, "/v1/events/:id"},
		{http.MethodDelete, "/v1/runs/:id"},
		{http.MethodPost, "/v1/apps/:app/sync"},
		{http.MethodPost, "/v1/invoke/*function_id"},
		{http.MethodPost, "/v1/cancellations"},
		{http.MethodGet, "/metrics"},
		{http.MethodGet, "/debug/pprof/*profile"},
		{http.MethodHead, "/v1/events/:id"},
	} {
		require.Contains(t, v1, known)
	}
	return v1
}

// concretePath fills a route's parameters: ":name" with a placeholder and a
// catch-all "*name" with two segments.
func concretePath(pattern string) string {
	segs := strings.Split(pattern, "/")
	for i, s := range segs {
		switch {
		case strings.HasPrefix(s, ":"):
			segs[i] = "auth-probe-" + s[1:]
		case strings.HasPrefix(s, "*"):
			segs[i] = "auth-probe/fn"
		}
	}
	return strings.Join(segs, "/")
}

// requestBody returns body for a route that takes one, and nil for GET and HEAD.
func requestBody(method, body string) io.Reader {
	if method == http.MethodGet || method == http.MethodHead {
		return nil
	}
	return strings.NewReader(body)
}

func TestRESTRoutesRequireSigningKey(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		b := setup(t, driver, serveMode)
		routes := v1Routes(t, b.srv)

		rejected := []struct {
			authorization string // "" sends no Authorization header
			message       string
		}{
			{"", "missing signing key"},
			{"Bearer", "missing signing key"},
			{"Bearer ", "missing signing key"},
			{authSigningKey, "missing signing key"},
			{"Basic " + authSigningKey, "missing signing key"},
			{"Token " + authSigningKey, "missing signing key"},
			{"Bearer wrong", "invalid signing key"},
			{"Bearer " + authSigningKey + "x", "invalid signing key"},
			{"Bearer " + authSigningKey[:len(authSigningKey)-1], "invalid signing key"},
			{"Bearer " + strings.ToUpper(authSigningKey), "invalid signing key"},
			{"Bearer " + authEventKeyA, "invalid signing key"}, // an event key is not the signing key
			{"Bearer " + authSigningKey + " " + authSigningKey, "invalid signing key"},
		}
		for _, r := range routes {
			path := concretePath(r.path)
			for _, tc := range rejected {
				header := http.Header{"Content-Type": {"application/json"}}
				if tc.authorization != "" {
					header.Set("Authorization", tc.authorization)
				}
				// A valid event, which a route that wrongly let it through
				// would store.
				resp := b.do(t, r.method, path, requestBody(r.method, `{"name":"auth/probe","id":"auth-probe"}`), header)
				t.Run(r.String()+" "+tc.authorization, func(t *testing.T) {
					if r.method == http.MethodHead {
						require.Equal(t, http.StatusUnauthorized, resp.status) // a HEAD reply has no body
						return
					}
					requireError(t, resp, http.StatusUnauthorized, tc.message)
				})
			}
		}

		// Nothing a refused request carried was acted on.
		events, _, err := b.store.ListEvents(context.Background(), store.EventFilter{})
		require.NoError(t, err)
		require.Empty(t, events)
	})
}

func TestRESTRoutesAcceptSigningKey(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		b := setup(t, driver, serveMode)
		auth := http.Header{"Authorization": {"Bearer " + authSigningKey}, "Content-Type": {"application/json"}}

		// Every route lets the right key through to its handler, which may
		// still refuse the placeholder request, but not with 401.
		for _, r := range v1Routes(t, b.srv) {
			resp := b.do(t, r.method, concretePath(r.path), requestBody(r.method, `{}`), auth)
			require.NotEqual(t, http.StatusUnauthorized, resp.status, "%s: body %s", r, resp.body)
		}

		// And a few succeed outright.
		resp := b.do(t, http.MethodPost, "/v1/events", strings.NewReader(`{"name":"auth/ok","id":"auth-ok"}`), auth)
		require.Equal(t, []string{"auth-ok"}, requireAccepted(t, resp))
		resp = b.do(t, http.MethodGet, "/v1/events/auth-ok", nil, auth)
		require.Equal(t, http.StatusOK, resp.status, "body: %s", resp.body)
		require.Contains(t, string(resp.body), `"auth/ok"`)
		resp = b.do(t, http.MethodGet, "/v1/events", nil, auth)
		require.Equal(t, http.StatusOK, resp.status, "body: %s", resp.body)
		resp = b.do(t, http.MethodGet, "/v1/functions", nil, auth)
		require.Equal(t, http.StatusOK, resp.status, "body: %s", resp.body)
		// Surrounding white space in the key is tolerated.
		resp = b.do(t, http.MethodGet, "/v1/events", nil, http.Header{"Authorization": {"Bearer  " + authSigningKey + " "}})
		require.Equal(t, http.StatusOK, resp.status, "body: %s", resp.body)
	})
}

func TestIngestRejectsUnknownEventKey(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		b := setup(t, driver, serveMode)
		body := `{"name":"auth/intake"}`
		for _, key := range []string{
			"wrong",
			authSigningKey, // the signing key is not an event key
			authEventKeyA + "x",
			authEventKeyA[:len(authEventKeyA)-1],
			strings.ToUpper(authEventKeyB),
			" " + authEventKeyA,
			authEventKeyA + "," + authEventKeyB,
		} {
			requireError(t, b.postTo(t, key, body), http.StatusUnauthorized, "unknown event key")
		}
		// A signing key in the header does not stand in for the event key.
		r := b.do(t, http.MethodPost, "/e/wrong", strings.NewReader(body), http.Header{"Authorization": {"Bearer " + authSigningKey}})
		requireError(t, r, http.StatusUnauthorized, "unknown event key")
		// Without a key there is no such route.
		r = b.do(t, http.MethodPost, "/e/", strings.NewReader(body), nil)
		require.GreaterOrEqual(t, r.status, 400, "body: %s", r.body)

		events, _, err := b.store.ListEvents(context.Background(), store.EventFilter{})
		require.NoError(t, err)
		require.Empty(t, events, "no event of a refused request is stored")
		require.Equal(t, 8.0, b.metric(t, `herald_events_rejected_total{reason="unauthorized"}`))

		// Each configured key is accepted.
		for _, key := range []string{authEventKeyA, authEventKeyB} {
			requireAccepted(t, b.postTo(t, key, body))
		}
		events, _, err = b.store.ListEvents(context.Background(), store.EventFilter{})
		require.NoError(t, err)
		require.Len(t, events, 2)
		require.True(t, slices.ContainsFunc(events, func(e store.Event) bool { return e.Name == "auth/intake" }))
	})
}
