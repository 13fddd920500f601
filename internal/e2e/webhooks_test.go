package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/examples/demo/demoapp"
	"github.com/herald-run/herald/ingest"
	"github.com/herald-run/herald/store"
)

const e2eSvixSecret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// svixDelivery signs body as Svix signs Clerk's webhooks.
func svixDelivery(t *testing.T, id string, body []byte) http.Header {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(e2eSvixSecret, "whsec_"))
	require.NoError(t, err)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	return http.Header{
		"Content-Type":   {"application/json"},
		"Svix-Id":        {id},
		"Svix-Timestamp": {ts},
		"Svix-Signature": {"v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))},
	}
}

// request sends one request with headers and returns the status and body.
func (b *bundle) request(t *testing.T, method, path string, body []byte, header http.Header) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, b.url+path, bytes.NewReader(body))
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, raw
}

// TestWebhookToCompletedRun follows a Clerk-style webhook from POST /w/{id}
// to the completed run of the example app's clerk-user-created function.
func TestWebhookToCompletedRun(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{}, demoapp.ClerkUserCreated)

	var created ingest.WebhookJSON
	b.do(t, http.MethodPost, "/v1/webhooks", []byte(`{"name":"clerk","verify":{"scheme":"svix","secret":"`+e2eSvixSecret+`"},
		"transform":"{\"name\": \"clerk/\" + body.type, \"data\": body.data, \"id\": headers[\"svix-id\"]}",
		"allow_events":["clerk/*"]}`), http.StatusCreated, &created)
	require.Equal(t, b.url+"/w/"+created.ID, created.URL)
	path := "/w/" + created.ID

	// A signed delivery: 200 once committed; the event is stored with the
	// svix-id as its id, and the function's run completes.
	body := []byte(`{"type":"user.created","object":"event","data":{"id":"user_2a","email_addresses":[{"email_address":"ada@example.com"}]}}`)
	header := svixDelivery(t, "msg_e2e_1", body)
	status, raw := b.request(t, http.MethodPost, path, body, header)
	require.Equal(t, http.StatusOK, status, string(raw))
	require.JSONEq(t, `{"ids":["msg_e2e_1"],"status":200}`, string(raw))
	e, err := b.store.GetEvent(context.Background(), "msg_e2e_1")
	require.NoError(t, err)
	require.Equal(t, "clerk/user.created", e.Name)
	runs := b.waitRuns(t, "msg_e2e_1", 1)
	require.Equal(t, "Completed", runs[0].Status, runs[0].Error)
	require.Equal(t, "clerk-user-created", runs[0].FunctionID)
	require.JSONEq(t, `{"userId":"user_2a","email":"ada@example.com"}`, string(runs[0].Output))

	// Redelivered by the sender: the same id, and still one run.
	status, raw = b.request(t, http.MethodPost, path, body, header)
	require.Equal(t, http.StatusOK, status, string(raw))
	require.JSONEq(t, `{"ids":["msg_e2e_1"],"status":200}`, string(raw))
	b.waitDispatched(t, "msg_e2e_1")
	require.Len(t, b.runs(t, "msg_e2e_1"), 1)

	// A tampered body: 401, nothing stored.
	tampered := bytes.Replace(body, []byte("user_2a"), []byte("user_2b"), 1)
	tamperedHeader := svixDelivery(t, "msg_e2e_2", body)
	status, raw = b.request(t, http.MethodPost, path, tampered, tamperedHeader)
	require.Equal(t, http.StatusUnauthorized, status, string(raw))
	require.Contains(t, string(raw), "webhook signature")
	_, err = b.store.GetEvent(context.Background(), "msg_e2e_2")
	require.ErrorIs(t, err, store.ErrNotFound)

	// A body the transform fails on: 400, nothing stored.
	odd := []byte(`{"object":"event"}`)
	status, raw = b.request(t, http.MethodPost, path, odd, svixDelivery(t, "msg_e2e_3", odd))
	require.Equal(t, http.StatusBadRequest, status, string(raw))
	require.Contains(t, string(raw), "transform")
	_, err = b.store.GetEvent(context.Background(), "msg_e2e_3")
	require.ErrorIs(t, err, store.ErrNotFound)

	// Listing never shows the secret.
	status, raw = b.request(t, http.MethodGet, "/v1/webhooks", nil, nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	require.NotContains(t, string(raw), strings.TrimPrefix(e2eSvixSecret, "whsec_"))
	var list struct{ Data []ingest.WebhookJSON }
	require.NoError(t, json.Unmarshal(raw, &list))
	require.Len(t, list.Data, 1)
	require.True(t, list.Data[0].Verify.SecretSet)

	// PATCH: the name changes, the secret is kept.
	var patched struct{ Data ingest.WebhookJSON }
	b.do(t, http.MethodPatch, "/v1/webhooks/"+created.ID, []byte(`{"name":"clerk-prod"}`), http.StatusOK, &patched)
	require.Equal(t, "clerk-prod", patched.Data.Name)
	require.Equal(t, "svix", patched.Data.Verify.Scheme)

	// DELETE: the source is gone and its URL answers 404.
	b.do(t, http.MethodDelete, "/v1/webhooks/"+created.ID, nil, http.StatusNoContent, nil)
	status, raw = b.request(t, http.MethodPost, path, body, svixDelivery(t, "msg_e2e_4", body))
	require.Equal(t, http.StatusNotFound, status, string(raw))
}
