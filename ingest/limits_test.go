package ingest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/ingest"
	"github.com/herald-run/herald/store"
)

// endlessBody is a request body of n bytes (far more than any limit) that
// counts how many of them the server reads. Its bytes are a JSON array being
// opened, so a server that read it all would still fail to decode it.
type endlessBody struct {
	n    int64
	read atomic.Int64
}

func (b *endlessBody) Read(p []byte) (int, error) {
	left := b.n - b.read.Load()
	if left <= 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), left)]
	for i := range p {
		p[i] = '['
	}
	b.read.Add(int64(len(p)))
	return len(p), nil
}

// intakeRoutes are the two routes that decode events, with what each needs
// in the request to get past authentication.
func intakeRoutes() map[string]http.Header {
	return map[string]http.Header{
		"/e/" + authEventKeyA: {"Content-Type": {"application/json"}},
		"/v1/events":          {"Content-Type": {"application/json"}, "Authorization": {"Bearer " + authSigningKey}},
	}
}

func TestIngestOversizedBodyIsNotRead(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		const limit = 4096
		b := setup(t, driver, serveMode, func(c *ingest.Config) { c.Limits.MaxBodyBytes = limit })
		for path, header := range intakeRoutes() {
			t.Run(path, func(t *testing.T) {
				serve := func(body *endlessBody, declared int64) *httptest.ResponseRecorder {
					req := httptest.NewRequest(http.MethodPost, path, body)
					req.ContentLength = declared
					for k, v := range header {
						req.Header[k] = v
					}
					rec := httptest.NewRecorder()
					b.srv.Handler().ServeHTTP(rec, req)
					return rec
				}
				requireTooLarge := func(rec *httptest.ResponseRecorder) {
					t.Helper()
					requireError(t, response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()},
						http.StatusRequestEntityTooLarge, fmt.Sprintf("larger than %d bytes", limit))
					require.Equal(t, "close", rec.Header().Get("Connection"), "the unread rest is not drained")
				}

				// A declared length over the limit is refused before reading.
				body := &endlessBody{n: 1 << 30}
				requireTooLarge(serve(body, body.n))
				require.Zero(t, body.read.Load(), "bytes read of a body declared too large")

				// Without a declared length (chunked), reading stops just
				// past the limit.
				body = &endlessBody{n: 1 << 30}
				requireTooLarge(serve(body, -1))
				require.Greater(t, body.read.Load(), int64(limit))
				require.LessOrEqual(t, body.read.Load(), int64(2*limit), "bytes read of a chunked body over the limit")
			})
		}

		// An unknown event key is refused before the body is looked at.
		body := &endlessBody{n: 1 << 30}
		req := httptest.NewRequest(http.MethodPost, "/e/wrong", body)
		rec := httptest.NewRecorder()
		b.srv.Handler().ServeHTTP(rec, req)
		require.Equal(t, http.StatusUnauthorized, rec.Code, "body: %s", rec.Body)
		require.Zero(t, body.read.Load())
	})
}

// TestIngestLimitsOverHTTP checks that the decoder's limits reach clients of
// both intake routes as 400s that name the event, the field and the rule, and
// that nothing of a refused request is stored.
func TestIngestLimitsOverHTTP(t *testing.T) {
	t.Parallel()
	deep := `{"a":` + strings.Repeat("[", ingest.MaxDepth) + strings.Repeat("]", ingest.MaxDepth) + `}`
	cases := []struct {
		name  string
		body  string
		parts []string
	}{
		{"too many events", repeatEvent(`{"name":"limits/x"}`, 4), []string{"request holds 4 events; at most 3"}},
		{"name too long", withName(`"` + strings.Repeat("n", ingest.MaxNameLen+1) + `"`), []string{"event 0: name:", "1 to 256 characters"}},
		{"name too long in runes", withName(`"` + strings.Repeat("ż", ingest.MaxNameLen+1) + `"`), []string{"event 0: name:", "1 to 256 characters"}},
		{"id too long", `[{"name":"limits/x"},{"name":"limits/x","id":"` + strings.Repeat("i", ingest.MaxIDLen+1) + `"}]`, []string{"event 1: id:", "at most 256"}},
		{"data too deep", `[{"name":"limits/x"},{"name":"limits/x","data":` + deep + `}]`, []string{"event 1: data:", "more than 64 levels deep"}},
		{"event too large", `{"name":"limits/x","data":{"s":"` + strings.Repeat("x", 1024) + `"}}`, []string{"event 0:", "at most 1024"}},
	}
	forEachDriver(t, func(t *testing.T, driver string) {
		b := setup(t, driver, serveMode, func(c *ingest.Config) {
			c.Limits.MaxEventsPerRequest = 3
			c.Limits.MaxEventBytes = 1024
		})
		for path, header := range intakeRoutes() {
			for _, tc := range cases {
				r := b.do(t, http.MethodPost, path, strings.NewReader(tc.body), header)
				t.Run(path+" "+tc.name, func(t *testing.T) {
					requireError(t, r, http.StatusBadRequest, tc.parts...)
				})
			}
			// At the limits, the same shapes are accepted.
			requireAccepted(t, b.do(t, http.MethodPost, path, strings.NewReader(repeatEvent(`{"name":"limits/ok"}`, 3)), header))
			requireAccepted(t, b.do(t, http.MethodPost, path, strings.NewReader(
				`{"name":"`+strings.Repeat("ż", ingest.MaxNameLen)+`","id":"`+strings.Repeat("i", ingest.MaxIDLen)+`"}`), header))
			requireAccepted(t, b.do(t, http.MethodPost, path, strings.NewReader(
				`{"name":"limits/ok","data":{"a":`+strings.Repeat("[", ingest.MaxDepth-1)+strings.Repeat("]", ingest.MaxDepth-1)+`}}`), header))
		}
		events, _, err := b.store.ListEvents(context.Background(), store.EventFilter{Limit: store.MaxListLimit})
		require.NoError(t, err)
		for _, e := range events {
			require.NotEqual(t, "limits/x", e.Name, "an event of a refused request was stored")
		}
		// Per route: 3 + one of the maximum name and id (stored once; the
		// second route's copy is a duplicate) + one deep.
		require.Len(t, events, 2*3+1+2)
	})
}
