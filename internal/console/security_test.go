package console_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// noRedirects is a client that shows redirects instead of following them.
func noRedirects(jar http.CookieJar) *http.Client {
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(raw)
}

func postForm(t *testing.T, c *http.Client, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	resp, err := c.PostForm(u, form)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(raw)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// In serve mode (a signing key) no page or action works without logging in:
// each redirects to the login and shows no data. The session cookie is not
// the key, and actions need the session's CSRF token.
const (
	serveKey   = "console-test-signing-key-3f9a"
	secretName = "acme/secret.thing"
)

// startServe runs a Herald as `herald serve` runs it, with a signing key,
// holding one event; it returns the Herald and the event's id.
func startServe(t *testing.T) (*heraldProc, string) {
	t.Helper()
	h, err := startHerald(t.TempDir(), serveKey)
	require.NoError(t, err)
	t.Cleanup(h.stop)
	return h, h.send(t, secretName, map[string]any{"card": "4242-secret"})
}

func TestServeModeNeedsLogin(t *testing.T) {
	const key = serveKey
	h, id := startServe(t)

	c := noRedirects(nil)
	for _, p := range []string{"/", "/stream", "/go?id=" + id, "/events/" + id, "/functions", "/runs", "/runs/x", "/waits", "/webhooks", "/replays/x", "/nowhere"} {
		resp, body := get(t, c, h.url+p)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode, p)
		require.True(t, strings.HasPrefix(resp.Header.Get("Location"), "/login"), "%s redirects to %s", p, resp.Header.Get("Location"))
		require.NotContains(t, body, secretName, p)
		require.NotContains(t, body, "4242", p)
	}
	actions := map[string]url.Values{
		"/send":                          {"name": {"acme/forged"}, "data": {"{}"}},
		"/cancel":                        {"run_id": {"x"}},
		"/rerun":                         {"run_id": {"x"}},
		"/functions/demo/welcome/pause":  {},
		"/functions/demo/welcome/invoke": {"data": {"{}"}},
		"/functions/demo/welcome/replay": {},
	}
	for p, form := range actions {
		resp, _ := postForm(t, c, h.url+p, form)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode, p)
		require.Equal(t, "/login", resp.Header.Get("Location"), p)
	}
	// The API itself still answers its own clients.
	status, raw := h.api(t, http.MethodGet, "/v1/events", nil)
	require.Equal(t, http.StatusOK, status)
	require.NotContains(t, string(raw), "acme/forged", "an action ran without a login")

	// A wrong key is refused; the right one gives a session cookie that is
	// not the key.
	resp, body := postForm(t, c, h.url+"/login", url.Values{"key": {"wrong"}, "next": {"/"}})
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.NotContains(t, body, secretName)
	resp, _ = postForm(t, c, h.url+"/login", url.Values{"key": {key}, "next": {"/events/" + id}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/events/"+id, resp.Header.Get("Location"))
	cookies := resp.Cookies()
	require.Len(t, cookies, 1)
	ck := cookies[0]
	require.True(t, ck.HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, ck.SameSite)
	require.False(t, ck.Secure, "plain HTTP: a Secure cookie would never come back")
	require.NotContains(t, ck.Value, key)
	setCookie := resp.Header.Get("Set-Cookie")
	require.Contains(t, setCookie, "HttpOnly")
	require.Contains(t, setCookie, "SameSite=Strict")

	// An open redirect is refused.
	resp, _ = postForm(t, c, h.url+"/login", url.Values{"key": {key}, "next": {"//evil.example/"}})
	require.Equal(t, "/", resp.Header.Get("Location"))

	// Behind TLS (a proxy saying so) the cookie is Secure.
	req, err := http.NewRequest(http.MethodPost, h.url+"/login", strings.NewReader(url.Values{"key": {key}}.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Forwarded-Proto", "https")
	tlsResp, err := c.Do(req)
	require.NoError(t, err)
	tlsResp.Body.Close()
	require.True(t, tlsResp.Cookies()[0].Secure)

	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	u, _ := url.Parse(h.url)
	jar.SetCookies(u, []*http.Cookie{{Name: ck.Name, Value: ck.Value}})
	in := noRedirects(jar)
	resp, body = get(t, in, h.url+"/events/"+id)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, secretName)

	// An action without the CSRF token, or with a forged one, is refused.
	resp, _ = postForm(t, in, h.url+"/send", url.Values{"name": {"acme/no-token"}, "data": {"{}"}})
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp, _ = postForm(t, in, h.url+"/send", url.Values{"name": {"acme/no-token"}, "data": {"{}"}, "csrf": {"forged"}})
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	_, raw = h.api(t, http.MethodGet, "/v1/events", nil)
	require.NotContains(t, string(raw), "acme/no-token")
	// With the page's token it is sent.
	_, page := get(t, in, h.url+"/")
	m := csrfField.FindStringSubmatch(page)
	require.NotNil(t, m, "the events page has no CSRF token")
	resp, _ = postForm(t, in, h.url+"/send", url.Values{"name": {"acme/with-token"}, "data": {"{}"}, "csrf": {m[1]}})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	_, raw = h.api(t, http.MethodGet, "/v1/events", nil)
	require.Contains(t, string(raw), "acme/with-token")

	// A forged or expired-looking session is no session.
	bad, err := cookiejar.New(nil)
	require.NoError(t, err)
	bad.SetCookies(u, []*http.Cookie{{Name: ck.Name, Value: "99999999999." + strings.Repeat("A", 43)}})
	resp, _ = get(t, noRedirects(bad), h.url+"/")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)

}

// In a browser, in serve mode: a page redirects to the login and shows
// nothing of the data, the key leads back to the page, the cookie is out of
// the page's reach, and logging out ends the session.
func TestBrowserServeModeLogin(t *testing.T) {
	const key = serveKey
	ctx := tab(t, 30*time.Second)
	h, id := startServe(t)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(h.url+"/events/"+id),
		chromedp.WaitVisible(chromedp.CSS("#login-form")),
	))
	loc, err := chromedp.Run(ctx, chromedp.Location())
	require.NoError(t, err)
	require.Contains(t, loc, "/login?next=")
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
	require.NoError(t, err)
	require.NotContains(t, text, secretName)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS("#key"), key),
		submit("#login-submit"),
		chromedp.WaitVisible(chromedp.CSS("#payload")),
	))
	text, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
	require.NoError(t, err)
	require.Contains(t, text, secretName)
	require.Contains(t, text, "4242-secret")
	// The session cookie is out of the page's reach.
	pageCookies, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.cookie`))
	require.NoError(t, err)
	require.Empty(t, pageCookies)

	// Logging out ends the session in this browser.
	require.NoError(t, chromedp.Do(ctx,
		submit("#logout"),
		chromedp.WaitVisible(chromedp.CSS("#login-form")),
		chromedp.Navigate(h.url+"/events/"+id),
		chromedp.WaitVisible(chromedp.CSS("#login-form")),
	))
	text, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
	require.NoError(t, err)
	require.NotContains(t, text, secretName)
}

// Every console response carries a strict CSP and refuses framing; the API's
// paths still reach the API.
func TestSecurityHeadersAndRouting(t *testing.T) {
	c := noRedirects(nil)
	for _, p := range []string{"/", "/functions", "/runs", "/waits", "/webhooks", "/static/console.js"} {
		resp, _ := get(t, c, dev.url+p)
		require.Equal(t, http.StatusOK, resp.StatusCode, p)
		csp := resp.Header.Get("Content-Security-Policy")
		require.Contains(t, csp, "script-src 'self'", p)
		require.Contains(t, csp, "frame-ancestors 'none'", p)
		require.NotContains(t, csp, "unsafe-inline", p)
		require.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"), p)
		require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), p)
	}
	resp, body := get(t, c, dev.url+"/v1/events?limit=1")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Type"), "application/json")
	require.Contains(t, body, `"data"`)
	resp, _ = get(t, c, dev.url+"/healthz")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Type"), "application/json")
	// In dev there is no login.
	resp, _ = get(t, c, dev.url+"/login")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/", resp.Header.Get("Location"))
	// A POST from another site is refused even with a valid token.
	_, page := get(t, c, dev.url+"/")
	m := csrfField.FindStringSubmatch(page)
	require.NotNil(t, m)
	req, err := http.NewRequest(http.MethodPost, dev.url+"/send", strings.NewReader(url.Values{"name": {"demo/cross-site"}, "data": {"{}"}, "csrf": {m[1]}}.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://evil.example")
	resp, err = c.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
}

// The stream pages with the API's cursor, filters by a pattern, and opens
// an event by id; the events page lists the synced functions.
func TestEventsPagesFiltersAndGoesTo(t *testing.T) {
	c := noRedirects(nil)
	name := "demo/page.test" + strings.ReplaceAll(time.Now().Format("150405.000"), ".", "")
	var first string
	for i := range 30 {
		id := dev.send(t, name, map[string]any{"i": i})
		if i == 0 {
			first = id
		}
	}
	rows := regexp.MustCompile(`<tr class="event-row" data-id="([^"]+)"`)
	_, page := get(t, c, dev.url+"/?q="+url.QueryEscape(name))
	require.Len(t, rows.FindAllStringSubmatch(page, -1), 25, "a page of the stream is a window of 25")
	require.Contains(t, page, "demo/welcome-email", "the synced functions are listed")
	older := regexp.MustCompile(`href="(/\?[^"]*cursor=[^"]+)" id="older"`).FindStringSubmatch(page)
	require.NotNil(t, older, "no link to older events")
	_, page = get(t, c, dev.url+strings.ReplaceAll(older[1], "&amp;", "&"))
	got := rows.FindAllStringSubmatch(page, -1)
	require.Len(t, got, 5)
	require.Equal(t, first, got[4][1], "oldest last")
	require.NotContains(t, page, `data-src="/stream`, "an older page does not poll")

	// A pattern keeps only matching names; a bad one says why.
	_, page = get(t, c, dev.url+"/?q="+url.QueryEscape("demo/*"))
	require.Contains(t, page, name)
	require.NotContains(t, page, `class="event-name">herald/`)
	_, page = get(t, c, dev.url+"/?q="+url.QueryEscape("demo/us*"))
	require.Contains(t, page, `id="events-error"`)
	require.Contains(t, page, "must come directly after")

	// The stream's rows alone, as the page polls them.
	_, frag := get(t, c, dev.url+"/stream?q="+url.QueryEscape(name))
	require.False(t, strings.Contains(frag, "<html"), "the stream answers rows only")
	require.Len(t, rows.FindAllStringSubmatch(frag, -1), 25)

	resp, _ := get(t, c, dev.url+"/go?id="+url.QueryEscape(first))
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/events/"+first, resp.Header.Get("Location"))
	// Ids are the sender's: "/", "?" and "%" survive the links.
	const oddID = "ord/1?x=%41 #1"
	status, raw := dev.api(t, http.MethodPost, "/e/test", map[string]any{"name": "demo/odd.id", "id": oddID, "data": map[string]any{}})
	require.Equal(t, http.StatusOK, status, string(raw))
	resp, _ = get(t, c, dev.url+"/go?id="+url.QueryEscape(oddID))
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	resp, body := get(t, c, dev.url+resp.Header.Get("Location"))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, `<dd class="mono" id="event-id">ord/1?x=%41 #1</dd>`)
	_, page = get(t, c, dev.url+"/?q=demo/odd.id")
	link := regexp.MustCompile(`<a href="([^"]+)" class="event-name">demo/odd.id</a>`).FindStringSubmatch(page)
	require.NotNil(t, link)
	resp, body = get(t, c, dev.url+link[1])
	require.Equal(t, http.StatusOK, resp.StatusCode, link[1])
	require.Contains(t, body, `id="event-id">ord/1?x=%41 #1<`)

	resp, body = get(t, c, dev.url+"/events/no-such-event")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.Contains(t, body, `no event with id`)
}
