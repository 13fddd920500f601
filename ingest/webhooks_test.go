package ingest_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/ingest"
	"github.com/herald-run/herald/store"
)

const (
	// svixSecret is a Svix secret as Clerk's dashboard shows it.
	svixSecret     = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	clerkTransform = `{"name": "clerk/" + body.type, "data": body.data, "id": headers["svix-id"]}`
	clerkBody      = `{"type":"user.created","data":{"id":"user_29w83sxmDNGwOuEthce5gg56FcC","email_addresses":[{"email_address":"ada@example.com"}]}}`
)

// svixHeaders signs body the way Svix does: base64 HMAC-SHA256, keyed with
// the secret's base64 part, of "<id>.<timestamp>.<body>".
func svixHeaders(t *testing.T, secret, id string, ts time.Time, body string) http.Header {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	require.NoError(t, err)
	stamp := strconv.FormatInt(ts.Unix(), 10)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + stamp + "." + body))
	return http.Header{
		"Content-Type":   {"application/json"},
		"Svix-Id":        {id},
		"Svix-Timestamp": {stamp},
		"Svix-Signature": {"v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))},
	}
}

func (b *bundle) createWebhook(t *testing.T, body string) ingest.WebhookJSON {
	t.Helper()
	return b.createWebhookAs(t, body, http.Header{"Content-Type": {"application/json"}})
}

// createWebhookAs creates a webhook source with the given request headers
// (the signing key, in serve mode).
func (b *bundle) createWebhookAs(t *testing.T, body string, header http.Header) ingest.WebhookJSON {
	t.Helper()
	r := b.do(t, http.MethodPost, "/v1/webhooks", strings.NewReader(body), header)
	require.Equal(t, http.StatusCreated, r.status, "body: %s", r.body)
	var w ingest.WebhookJSON
	require.NoError(t, strictUnmarshal(r.body, &w))
	return w
}

func (b *bundle) deliver(t *testing.T, id, body string, header http.Header) response {
	t.Helper()
	return b.do(t, http.MethodPost, "/w/"+id, strings.NewReader(body), header)
}

func svixSource(name, transform string, allow ...string) string {
	req := map[string]any{"name": name, "transform": transform,
		"verify": map[string]any{"scheme": "svix", "secret": svixSecret}, "allow_events": allow}
	raw, _ := json.Marshal(req)
	return string(raw)
}

func TestWebhookCRUD(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		b := setup(t, driver)
		created := b.createWebhook(t, svixSource("clerk", clerkTransform, "clerk/*"))
		require.True(t, strings.HasPrefix(created.ID, "wh_"), created.ID)
		require.Equal(t, b.http.URL+"/w/"+created.ID, created.URL)
		require.Equal(t, ingest.VerifyJSON{Scheme: "svix", SecretSet: true}, created.Verify)
		require.Equal(t, []string{"clerk/*"}, created.AllowEvents)

		other := b.createWebhook(t, `{"name":"gh","verify":{"scheme":"github","secret":"gh-secret"}}`)
		require.Equal(t, []string{}, other.AllowEvents)

		// No reply ever carries a secret.
		for _, path := range []string{"/v1/webhooks", "/v1/webhooks/" + created.ID, "/v1/webhooks/" + other.ID} {
			r := b.get(t, path)
			require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
			require.NotContains(t, string(r.body), strings.TrimPrefix(svixSecret, "whsec_"))
			require.NotContains(t, string(r.body), "gh-secret")
			require.NotContains(t, string(r.body), `"secret"`)
		}
		r := b.get(t, "/v1/webhooks")
		var list struct{ Data []ingest.WebhookJSON }
		require.NoError(t, json.Unmarshal(r.body, &list))
		require.Len(t, list.Data, 2)
		require.Equal(t, created.ID, list.Data[0].ID)
		require.Equal(t, "clerk", list.Data[0].Name)
		require.Equal(t, clerkTransform, list.Data[0].Transform)

		// PATCH changes only the fields sent; a verify without a secret
		// keeps the stored one.
		r = b.do(t, http.MethodPatch, "/v1/webhooks/"+created.ID,
			strings.NewReader(`{"name":"clerk-prod","verify":{"scheme":"svix","tolerance_s":60}}`), nil)
		require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
		require.NotContains(t, string(r.body), strings.TrimPrefix(svixSecret, "whsec_"))
		var patched struct{ Data ingest.WebhookJSON }
		require.NoError(t, json.Unmarshal(r.body, &patched))
		require.Equal(t, "clerk-prod", patched.Data.Name)
		require.Equal(t, clerkTransform, patched.Data.Transform)
		require.Equal(t, ingest.VerifyJSON{Scheme: "svix", SecretSet: true, ToleranceS: 60}, patched.Data.Verify)
		resp := b.deliver(t, created.ID, clerkBody, svixHeaders(t, svixSecret, "msg_patched", time.Now(), clerkBody))
		require.Equal(t, []string{"msg_patched"}, requireAccepted(t, resp), "the kept secret still verifies")

		requireError(t, b.do(t, http.MethodPatch, "/v1/webhooks/"+created.ID, strings.NewReader(`{"name":"Bad Name"}`), nil),
			http.StatusBadRequest, "name")
		requireError(t, b.do(t, http.MethodPatch, "/v1/webhooks/wh_nope", strings.NewReader(`{"name":"x"}`), nil),
			http.StatusNotFound, "wh_nope")

		r = b.do(t, http.MethodDelete, "/v1/webhooks/"+created.ID, nil, nil)
		require.Equal(t, http.StatusNoContent, r.status, "body: %s", r.body)
		requireError(t, b.get(t, "/v1/webhooks/"+created.ID), http.StatusNotFound, created.ID)
		requireError(t, b.do(t, http.MethodDelete, "/v1/webhooks/"+created.ID, nil, nil), http.StatusNotFound)
		requireError(t, b.deliver(t, created.ID, clerkBody, svixHeaders(t, svixSecret, "msg_gone", time.Now(), clerkBody)),
			http.StatusNotFound, "no webhook")
	})
}

func TestWebhookPublicURL(t *testing.T) {
	t.Parallel()
	b := setup(t, "sqlite", func(c *ingest.Config) { c.PublicURL = "https://hooks.example.com/herald/" })
	w := b.createWebhook(t, `{"name":"gh","verify":{"scheme":"github","secret":"s"}}`)
	require.Equal(t, "https://hooks.example.com/herald/w/"+w.ID, w.URL)

	_, err := ingest.New(ingest.Config{Store: b.store, AllowAnyEventKey: true, PublicURL: "hooks.example.com"})
	require.ErrorContains(t, err, "PublicURL")
}

func TestWebhookCreateValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, "sqlite")
	for _, tc := range []struct{ body, want string }{
		{`{"verify":{"scheme":"github","secret":"s"}}`, "name: is required"},
		{`{"name":"","verify":{"scheme":"github","secret":"s"}}`, "name: must be 1 to 64"},
		{`{"name":"Clerk","verify":{"scheme":"github","secret":"s"}}`, "name: must be 1 to 64"},
		{`{"name":"` + strings.Repeat("a", 65) + `","verify":{"scheme":"github","secret":"s"}}`, "name: must be 1 to 64"},
		{`{"name":"a"}`, "verify: is required"},
		{`{"name":"a","verify":{"scheme":"nope","secret":"s"}}`, "verify: scheme"},
		{`{"name":"a","verify":{"scheme":"svix"}}`, "verify: secret"},
		{`{"name":"a","verify":{"scheme":"svix","secret":"not-whsec"}}`, "verify: secret"},
		{`{"name":"a","verify":{"scheme":"hmac-sha256","secret":"s"}}`, "verify: header"},
		{`{"name":"a","verify":{"scheme":"github","secret":"s","secrt":"x"}}`, `unknown field "secrt"`},
		{`{"name":"a","verify":{"scheme":"github","secret":"s"},"transform":"{\"name\": body.("}`, "line 1, column"},
		{`{"name":"a","verify":{"scheme":"github","secret":"s"},"transform":"42"}`, "transform"},
		{`{"name":"a","verify":{"scheme":"github","secret":"s"},"allow_events":["ok/*","bad*"]}`, "allow_events[1]"},
		{`{"name":"a","verify":{"scheme":"github","secret":"s"},"nme":"x"}`, `unknown field "nme"`},
		{`not json`, "not valid JSON"},
	} {
		r := b.do(t, http.MethodPost, "/v1/webhooks", strings.NewReader(tc.body), nil)
		requireError(t, r, http.StatusBadRequest, tc.want)
		require.NotContains(t, string(r.body), "not-whsec", "errors never quote the secret")
	}
	list, err := b.store.ListWebhooks(context.Background())
	require.NoError(t, err)
	require.Empty(t, list)
}

func TestWebhookDeliverySvix(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		b := setup(t, driver)
		w := b.createWebhook(t, svixSource("clerk", clerkTransform, "clerk/user.*"))

		// A signed delivery becomes the transformed event, with the svix-id as id.
		h := svixHeaders(t, svixSecret, "msg_2a", time.Now(), clerkBody)
		require.Equal(t, []string{"msg_2a"}, requireAccepted(t, b.deliver(t, w.ID, clerkBody, h)))
		e := b.getEvent(t, "msg_2a")
		require.Equal(t, "clerk/user.created", e.Name)
		require.JSONEq(t, `{"id":"user_29w83sxmDNGwOuEthce5gg56FcC","email_addresses":[{"email_address":"ada@example.com"}]}`, string(e.Data))

		// Redelivered: the same id, stored once.
		require.Equal(t, []string{"msg_2a"}, requireAccepted(t, b.deliver(t, w.ID, clerkBody, h)))
		require.Equal(t, 1.0, b.metric(t, "herald_events_deduplicated_total"))

		// Bad signatures: 401, nothing stored.
		tampered := strings.Replace(clerkBody, "ada@", "eve@", 1)
		requireError(t, b.deliver(t, w.ID, tampered, h), http.StatusUnauthorized, "webhook signature")
		wrong := svixHeaders(t, "whsec_"+base64.StdEncoding.EncodeToString([]byte("another secret")), "msg_2b", time.Now(), clerkBody)
		requireError(t, b.deliver(t, w.ID, clerkBody, wrong), http.StatusUnauthorized, "webhook signature")
		stale := svixHeaders(t, svixSecret, "msg_2c", time.Now().Add(-time.Hour), clerkBody)
		requireError(t, b.deliver(t, w.ID, clerkBody, stale), http.StatusUnauthorized, "webhook signature")
		requireError(t, b.deliver(t, w.ID, clerkBody, nil), http.StatusUnauthorized, "webhook signature")
		for _, id := range []string{"msg_2b", "msg_2c"} {
			requireError(t, b.get(t, "/v1/events/"+id), http.StatusNotFound)
		}

		// The transform fails on a body without "type": 400.
		odd := `{"data":{}}`
		requireError(t, b.deliver(t, w.ID, odd, svixHeaders(t, svixSecret, "msg_3", time.Now(), odd)), http.StatusBadRequest, "transform")
		// Not JSON at all.
		requireError(t, b.deliver(t, w.ID, "<xml/>", svixHeaders(t, svixSecret, "msg_4", time.Now(), "<xml/>")), http.StatusBadRequest, "not JSON")
		// An event name allow_events does not allow.
		session := `{"type":"session.created","data":{}}`
		requireError(t, b.deliver(t, w.ID, session, svixHeaders(t, svixSecret, "msg_5", time.Now(), session)),
			http.StatusBadRequest, "event 0: name", "allow_events")
		// The event rules of POST /e apply: data must be an object.
		listData := `{"type":"user.updated","data":[1]}`
		requireError(t, b.deliver(t, w.ID, listData, svixHeaders(t, svixSecret, "msg_6", time.Now(), listData)),
			http.StatusBadRequest, "event 0: data")

		events, _, err := b.store.ListEvents(context.Background(), store.EventFilter{})
		require.NoError(t, err)
		require.Len(t, events, 1, "only the valid delivery is stored")
	})
}

func TestWebhookDeliveryDefaults(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		b := setup(t, driver)
		const secret = "gh-secret"
		sign := func(id, body string) http.Header {
			mac := hmac.New(sha256.New, []byte(secret))
			mac.Write([]byte(body))
			return http.Header{"X-Hub-Signature-256": {"sha256=" + hex.EncodeToString(mac.Sum(nil))}, "X-Github-Delivery": {id}}
		}

		// Without a transform: webhook/<name> with the body as data, the
		// delivery id as event id.
		gh := b.createWebhook(t, `{"name":"github","verify":{"scheme":"github","secret":"gh-secret"}}`)
		body := `{"action":"opened","number":12345678901234567890}`
		require.Equal(t, []string{"d-1"}, requireAccepted(t, b.deliver(t, gh.ID, body, sign("d-1", body))))
		e := b.getEvent(t, "d-1")
		require.Equal(t, "webhook/github", e.Name)
		require.JSONEq(t, body, string(e.Data), "the body is stored as sent")

		// Several events from one delivery: distinct ids derived from it.
		many := b.createWebhook(t, fmt.Sprintf(`{"name":"many","verify":{"scheme":"github","secret":%q},
			"transform":"body.items.map(i, {\"name\": \"gh/item\", \"data\": {\"n\": i}})"}`, secret))
		body = `{"items":[1,2,3]}`
		require.Equal(t, []string{"d-2/0", "d-2/1", "d-2/2"}, requireAccepted(t, b.deliver(t, many.ID, body, sign("d-2", body))))
		require.JSONEq(t, `{"n":2}`, string(b.getEvent(t, "d-2/1").Data))

		// An empty list skips the delivery.
		body = `{"items":[]}`
		r := b.deliver(t, many.ID, body, sign("d-3", body))
		require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
		require.JSONEq(t, `{"ids":[],"status":200}`, string(r.body))

		// A reserved name is refused like on POST /e.
		bad := b.createWebhook(t, fmt.Sprintf(`{"name":"bad","verify":{"scheme":"github","secret":%q},
			"transform":"{\"name\": \"herald/x\", \"data\": {}}"}`, secret))
		requireError(t, b.deliver(t, bad.ID, `{}`, sign("d-4", `{}`)), http.StatusBadRequest, "event 0: name", "reserved")
	})
}

func TestWebhookDeliveryTooLarge(t *testing.T) {
	t.Parallel()
	b := setup(t, "sqlite", func(c *ingest.Config) { c.Limits.MaxBodyBytes = 1024 })
	w := b.createWebhook(t, svixSource("clerk", clerkTransform))
	body := `{"type":"user.created","data":{"pad":"` + strings.Repeat("x", 2048) + `"}}`
	requireError(t, b.deliver(t, w.ID, body, svixHeaders(t, svixSecret, "msg_big", time.Now(), body)),
		http.StatusRequestEntityTooLarge, "larger than 1024 bytes")
}
