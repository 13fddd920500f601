package console

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/internal/wire"
)

func TestUnescapeHTML(t *testing.T) {
	for in, want := range map[string]string{
		`"\u003cscript\u003e"`:  `"<script>"`,
		`"a \u0026 b"`:          `"a & b"`,
		`"\\u003c"`:             `"\\u003c"`, // an escaped backslash, then text
		`"\\\u003c"`:            `"\\<"`,
		`"\u00e9 \n \" \u2028"`: `"\u00e9 \n \" \u2028"`,
		`"\u003C"`:              `"<"`,
		`"tail\`:                `"tail\`,
	} {
		require.Equal(t, want, unescapeHTML(in), in)
	}
	require.Equal(t, "{\n  \"a\": \"<b>\"\n}", prettyJSON([]byte(`{"a":"\u003cb\u003e"}`)))
}

func TestFieldOf(t *testing.T) {
	f, r := fieldOf(`event 0: name: must not start with "herald/"`)
	require.Equal(t, "name", f)
	require.Equal(t, `must not start with "herald/"`, r)
	f, r = fieldOf("event 0: data: must be a JSON object")
	require.Equal(t, "data", f)
	require.Equal(t, "must be a JSON object", r)
	f, r = fieldOf("request body is empty")
	require.Empty(t, f)
	require.Equal(t, "request body is empty", r)
}

func TestSafeNext(t *testing.T) {
	require.Equal(t, "/events/x?q=1", safeNext("/events/x?q=1"))
	for _, bad := range []string{"", "//evil.example", "/\\evil.example", "https://evil.example/", "javascript:alert(1)"} {
		require.Equal(t, "/", safeNext(bad), bad)
	}
}

func TestSessions(t *testing.T) {
	c, err := newConsole(Config{API: http.NotFoundHandler(), SigningKey: "k1"})
	require.NoError(t, err)
	now := time.Now()
	tok := c.newSession(now.Add(time.Hour))
	require.True(t, c.validSession(tok, now))
	require.False(t, c.validSession(tok, now.Add(2*time.Hour)), "expired")
	require.NotContains(t, tok, "k1")
	// Another key, or a changed expiry, does not verify.
	other, err := newConsole(Config{API: http.NotFoundHandler(), SigningKey: "k2"})
	require.NoError(t, err)
	require.False(t, other.validSession(tok, now))
	exp, sig, _ := strings.Cut(tok, ".")
	require.False(t, c.validSession(exp+"0."+sig, now))
	require.NotEqual(t, c.csrfToken(tok), c.csrfToken(c.newSession(now.Add(2*time.Hour))), "a CSRF token is bound to its session")
}

func TestFlowControlInWords(t *testing.T) {
	got := flowControl(functionJSON{Config: &wire.FunctionConfig{
		Retries:     3,
		Concurrency: []wire.ConcurrencyConfig{{Limit: 2, Key: "event.data.userId"}},
		RateLimit:   &wire.RateLimitConfig{Limit: 10, PeriodMS: 60000},
		Debounce:    &wire.DebounceConfig{PeriodMS: 5000, TimeoutMS: 60000},
		Singleton:   &wire.SingletonConfig{Mode: wire.SingletonCancel},
		CancelOn:    []wire.CancelOnConfig{{Event: "demo/user.deleted", Match: "data.userId"}},
	}})
	require.Equal(t, []string{
		"At most 2 steps run at once per value of event.data.userId.",
		"Rate limited: at most 10 runs every 1m0s; more are skipped.",
		"Debounced: runs 5s after the last event, at most 1m0s after the first.",
		"Singleton: a new event cancels the running one and starts.",
		"Cancelled by the event demo/user.deleted with the same data.userId.",
		"Steps are retried up to 3 times.",
	}, got)
	require.Empty(t, flowControl(functionJSON{}))
}

func TestCronNextTimes(t *testing.T) {
	now := time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)
	v := describeTriggers([]wire.TriggerConfig{{Cron: "0 3 * * *"}, {Event: "demo/*", If: "event.data.x > 1"}}, now)
	require.Equal(t, []string{"2026-03-02 03:00:00.000Z", "2026-03-03 03:00:00.000Z", "2026-03-04 03:00:00.000Z"}, v[0].Next)
	require.Equal(t, "on every event named demo/*", v[1].Text)
	require.Equal(t, "event.data.x > 1", v[1].If)
}

func TestRoute(t *testing.T) {
	api := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Header().Set("X-Served-By", "api") })
	con := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Header().Set("X-Served-By", "console") })
	h := Route(api, con)
	for path, want := range map[string]string{
		"/v1/events": "api", "/e/key": "api", "/w/id": "api", "/healthz": "api", "/readyz": "api", "/metrics": "api",
		"/debug/pprof/": "api", "/": "console", "/functions": "console", "/events/x": "console", "/v1x": "console", "/static/console.js": "console",
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		require.Equal(t, want, rec.Header().Get("X-Served-By"), path)
	}
}

func TestQueryLinksAreEncodedOnce(t *testing.T) {
	c, err := newConsole(Config{API: http.NotFoundHandler()})
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	c.renderBlock(rec, httptest.NewRequest(http.MethodGet, "/", nil), http.StatusOK, "events", "layout",
		eventsPage{Query: `demo/*"&x=<y>`, Next: "c/1+2", Live: true})
	body := rec.Body.String()
	require.Contains(t, body, `data-src="/stream?q=demo%2F%2A%22%26x%3D%3Cy%3E"`)
	require.Contains(t, body, `href="/?cursor=c%2F1%2B2&amp;q=demo%2F%2A%22%26x%3D%3Cy%3E" id="older"`)
}
