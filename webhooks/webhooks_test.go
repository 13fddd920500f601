package webhooks_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/triggers"
	"github.com/herald-run/herald/webhooks"
)

var (
	now = time.Unix(1_700_000_000, 0)

	svixKey    = []byte("herald-test-svix-key-0123456789")
	svixSecret = "whsec_" + base64.StdEncoding.EncodeToString(svixKey)

	stripeSecret = "whsec_test_4eC39HqLyjWDarjtT1zdp7dc"
	githubSecret = "It's a Secret to Everybody"
	hmacSecret   = "generic-secret"

	body = []byte(`{"type":"user.created","data":{"id":"user_29w83sxmDNGwOuEthce5gg56FcC"}}`)
)

func mac(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// svixSign computes a svix-signature entry from the published algorithm.
func svixSign(key []byte, id string, ts int64, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(mac(key, id+"."+strconv.FormatInt(ts, 10)+"."+string(body)))
}

func svixHeaders(id string, ts int64, sig string) http.Header {
	h := http.Header{}
	h.Set("svix-id", id)
	h.Set("svix-timestamp", strconv.FormatInt(ts, 10))
	h.Set("svix-signature", sig)
	return h
}

func stripeSign(secret string, ts int64, body []byte) string {
	return hex.EncodeToString(mac([]byte(secret), strconv.FormatInt(ts, 10)+"."+string(body)))
}

func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

type checkCase struct {
	name    string
	body    []byte
	headers http.Header
	wantID  string
	wantErr string // substring of the SignatureError's reason; "" for success
}

func runChecks(t *testing.T, v webhooks.Verify, cases []checkCase) {
	t.Helper()
	require.NoError(t, v.Validate())
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := tc.body
			if b == nil {
				b = body
			}
			id, err := v.Check(b, tc.headers, now)
			if tc.wantErr == "" {
				require.NoError(t, err)
				require.Equal(t, tc.wantID, id)
				return
			}
			var se *webhooks.SignatureError
			require.ErrorAs(t, err, &se)
			require.Contains(t, se.Reason, tc.wantErr)
			require.NotContains(t, err.Error(), v.Secret)
			require.Empty(t, id)
		})
	}
}

func TestCheckSvix(t *testing.T) {
	t.Parallel()
	ts := now.Unix()
	good := svixSign(svixKey, "msg_1", ts, body)
	other := svixSign([]byte("another key"), "msg_1", ts, body)
	std := header("webhook-id", "msg_2", "webhook-timestamp", strconv.FormatInt(ts, 10),
		"webhook-signature", svixSign(svixKey, "msg_2", ts, body))
	runChecks(t, webhooks.Verify{Scheme: webhooks.SchemeSvix, Secret: svixSecret}, []checkCase{
		{name: "valid", headers: svixHeaders("msg_1", ts, good), wantID: "msg_1"},
		{name: "second of several signatures matches", headers: svixHeaders("msg_1", ts, other+" v1a,c29tZXRoaW5n "+good), wantID: "msg_1"},
		{name: "standard webhooks header names", headers: std, wantID: "msg_2"},
		{name: "within tolerance", headers: svixHeaders("msg_1", ts-299, svixSign(svixKey, "msg_1", ts-299, body)), wantID: "msg_1"},
		{name: "tampered body", body: []byte(strings.Replace(string(body), "created", "deleted", 1)), headers: svixHeaders("msg_1", ts, good), wantErr: "no signature matches"},
		{name: "tampered id", headers: svixHeaders("msg_9", ts, good), wantErr: "no signature matches"},
		{name: "wrong secret", headers: svixHeaders("msg_1", ts, other), wantErr: "no signature matches"},
		{name: "stale timestamp", headers: svixHeaders("msg_1", ts-301, svixSign(svixKey, "msg_1", ts-301, body)), wantErr: fmt.Sprintf("timestamp %d is outside the tolerance of 5m0s", ts-301)},
		{name: "future timestamp", headers: svixHeaders("msg_1", ts+301, svixSign(svixKey, "msg_1", ts+301, body)), wantErr: "outside the tolerance"},
		{name: "missing id", headers: header("svix-timestamp", "1", "svix-signature", good), wantErr: "missing header svix-id"},
		{name: "missing timestamp", headers: header("svix-id", "msg_1", "svix-signature", good), wantErr: "missing header svix-timestamp"},
		{name: "missing signature", headers: header("svix-id", "msg_1", "svix-timestamp", "1"), wantErr: "missing header svix-signature"},
		{name: "no headers", headers: nil, wantErr: "missing header svix-id"},
		{name: "malformed timestamp", headers: header("svix-id", "msg_1", "svix-timestamp", "yesterday", "svix-signature", good), wantErr: "malformed header svix-timestamp"},
		{name: "malformed signature", headers: svixHeaders("msg_1", ts, "garbage"), wantErr: "malformed header svix-signature"},
		{name: "signature not base64", headers: svixHeaders("msg_1", ts, "v1,!!!"), wantErr: "no signature matches"},
	})
}

func TestCheckSvixTolerance(t *testing.T) {
	t.Parallel()
	v := webhooks.Verify{Scheme: webhooks.SchemeSvix, Secret: svixSecret, ToleranceS: 3600}
	ts := now.Unix() - 3000
	id, err := v.Check(body, svixHeaders("msg_1", ts, svixSign(svixKey, "msg_1", ts, body)), now)
	require.NoError(t, err)
	require.Equal(t, "msg_1", id)
}

func TestCheckStripe(t *testing.T) {
	t.Parallel()
	ts := now.Unix()
	sig := func(ts int64, secret string) http.Header {
		return header("Stripe-Signature", fmt.Sprintf("t=%d,v1=%s", ts, stripeSign(secret, ts, body)))
	}
	multi := fmt.Sprintf("t=%d,v1=%s,v1=%s,v0=%s", ts, stripeSign("whsec_old", ts, body), stripeSign(stripeSecret, ts, body), strings.Repeat("0", 64))
	runChecks(t, webhooks.Verify{Scheme: webhooks.SchemeStripe, Secret: stripeSecret}, []checkCase{
		{name: "valid", headers: sig(ts, stripeSecret)},
		{name: "second of several signatures matches", headers: header("Stripe-Signature", multi)},
		{name: "tampered body", body: []byte(`{}`), headers: sig(ts, stripeSecret), wantErr: "no signature matches"},
		{name: "wrong secret", headers: sig(ts, "whsec_other"), wantErr: "no signature matches"},
		{name: "stale timestamp", headers: sig(ts-301, stripeSecret), wantErr: fmt.Sprintf("timestamp %d is outside the tolerance of 5m0s", ts-301)},
		{name: "future timestamp", headers: sig(ts+301, stripeSecret), wantErr: "outside the tolerance"},
		{name: "missing header", headers: header("Svix-Id", "x"), wantErr: "missing header Stripe-Signature"},
		{name: "no timestamp", headers: header("Stripe-Signature", "v1="+stripeSign(stripeSecret, ts, body)), wantErr: "malformed header Stripe-Signature: no timestamp"},
		{name: "no v1", headers: header("Stripe-Signature", fmt.Sprintf("t=%d,v0=abcd", ts)), wantErr: "malformed header Stripe-Signature: no v1"},
		{name: "not key=value", headers: header("Stripe-Signature", "garbage"), wantErr: "malformed header Stripe-Signature"},
		{name: "bad timestamp", headers: header("Stripe-Signature", "t=soon,v1=00"), wantErr: "malformed header Stripe-Signature"},
		{name: "signature not hex", headers: header("Stripe-Signature", fmt.Sprintf("t=%d,v1=zz", ts)), wantErr: "no signature matches"},
	})
}

func TestCheckGitHub(t *testing.T) {
	t.Parallel()
	good := "sha256=" + hex.EncodeToString(mac([]byte(githubSecret), string(body)))
	runChecks(t, webhooks.Verify{Scheme: webhooks.SchemeGitHub, Secret: githubSecret}, []checkCase{
		{name: "valid", headers: header("X-Hub-Signature-256", good, "X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"), wantID: "72d3162e-cc78-11e3-81ab-4c9367dc0958"},
		{name: "valid upper-case hex", headers: header("X-Hub-Signature-256", "sha256="+strings.ToUpper(good[7:]))},
		{name: "tampered body", body: []byte(`{"zen":"x"}`), headers: header("X-Hub-Signature-256", good), wantErr: "no signature matches"},
		{name: "wrong secret", headers: header("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac([]byte("nope"), string(body)))), wantErr: "no signature matches"},
		{name: "missing header", headers: header("X-Hub-Signature", "sha1=00"), wantErr: "missing header X-Hub-Signature-256"},
		{name: "no prefix", headers: header("X-Hub-Signature-256", good[7:]), wantErr: "malformed header X-Hub-Signature-256"},
		{name: "not hex", headers: header("X-Hub-Signature-256", "sha256=xyz"), wantErr: "malformed header X-Hub-Signature-256"},
	})
}

func TestCheckHMACSHA256(t *testing.T) {
	t.Parallel()
	sum := mac([]byte(hmacSecret), string(body))
	hexV := webhooks.Verify{Scheme: webhooks.SchemeHMACSHA256, Secret: hmacSecret, Header: "X-Signature"}
	runChecks(t, hexV, []checkCase{
		{name: "valid", headers: header("X-Signature", hex.EncodeToString(sum))},
		{name: "tampered body", body: []byte("x"), headers: header("X-Signature", hex.EncodeToString(sum)), wantErr: "no signature matches"},
		{name: "wrong secret", headers: header("X-Signature", hex.EncodeToString(mac([]byte("x"), string(body)))), wantErr: "no signature matches"},
		{name: "missing header", headers: header("X-Other", hex.EncodeToString(sum)), wantErr: "missing header X-Signature"},
		{name: "not hex", headers: header("X-Signature", "sig"), wantErr: "malformed header X-Signature: signature is not hex"},
		{name: "truncated", headers: header("X-Signature", hex.EncodeToString(sum[:16])), wantErr: "no signature matches"},
	})
	b64V := webhooks.Verify{Scheme: webhooks.SchemeHMACSHA256, Secret: hmacSecret, Header: "X-Sig", Encoding: "base64", Prefix: "sha256="}
	runChecks(t, b64V, []checkCase{
		{name: "base64 std", headers: header("X-Sig", "sha256="+base64.StdEncoding.EncodeToString(sum))},
		{name: "base64 raw url", headers: header("X-Sig", "sha256="+base64.RawURLEncoding.EncodeToString(sum))},
		{name: "missing prefix", headers: header("X-Sig", base64.StdEncoding.EncodeToString(sum)), wantErr: `malformed header X-Sig: expected the prefix "sha256="`},
		{name: "hex instead of base64", headers: header("X-Sig", "sha256="+hex.EncodeToString(sum)), wantErr: "no signature matches"},
		{name: "not base64", headers: header("X-Sig", "sha256=*"), wantErr: "signature is not base64"},
	})
}

func TestCheckInvalidVerify(t *testing.T) {
	t.Parallel()
	_, err := webhooks.Verify{Scheme: webhooks.SchemeSvix, Secret: "whsec_%%%"}.Check(body, http.Header{}, now)
	require.ErrorContains(t, err, "secret:")
	var se *webhooks.SignatureError
	require.False(t, errors.As(err, &se), "a configuration error is not a signature error")
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		v       webhooks.Verify
		wantErr string
	}{
		{"svix", webhooks.Verify{Scheme: "svix", Secret: svixSecret, ToleranceS: 600}, ""},
		{"stripe", webhooks.Verify{Scheme: "stripe", Secret: stripeSecret}, ""},
		{"github", webhooks.Verify{Scheme: "github", Secret: githubSecret}, ""},
		{"hmac-sha256", webhooks.Verify{Scheme: "hmac-sha256", Secret: "s", Header: "X-Sig", Encoding: "base64", Prefix: "v1="}, ""},
		{"no scheme", webhooks.Verify{Secret: "s"}, "scheme: is required"},
		{"unknown scheme", webhooks.Verify{Scheme: "md5", Secret: "s"}, `scheme: "md5" is not one of svix, stripe, github or hmac-sha256`},
		{"empty secret", webhooks.Verify{Scheme: "github"}, "secret: must not be empty"},
		{"long secret", webhooks.Verify{Scheme: "github", Secret: strings.Repeat("s", 1025)}, "secret: is longer than 1024 bytes"},
		{"svix secret without whsec_", webhooks.Verify{Scheme: "svix", Secret: base64.StdEncoding.EncodeToString(svixKey)}, `secret: a svix secret starts with "whsec_"`},
		{"svix secret not base64", webhooks.Verify{Scheme: "svix", Secret: "whsec_not base64!"}, "secret: a svix secret is \"whsec_\" followed by base64"},
		{"svix secret empty key", webhooks.Verify{Scheme: "svix", Secret: "whsec_"}, "secret: a svix secret"},
		{"hmac without header", webhooks.Verify{Scheme: "hmac-sha256", Secret: "s"}, "header: is required"},
		{"hmac bad header name", webhooks.Verify{Scheme: "hmac-sha256", Secret: "s", Header: "X Sig"}, `header: "X Sig" is not a valid HTTP header name`},
		{"hmac bad encoding", webhooks.Verify{Scheme: "hmac-sha256", Secret: "s", Header: "X-Sig", Encoding: "base32"}, `encoding: "base32" is not one of hex`},
		{"hmac bad prefix", webhooks.Verify{Scheme: "hmac-sha256", Secret: "s", Header: "X-Sig", Prefix: "sha256 ="}, "prefix: must be printable ASCII"},
		{"header on github", webhooks.Verify{Scheme: "github", Secret: "s", Header: "X-Sig"}, "header: is only used by the hmac-sha256 scheme"},
		{"encoding on svix", webhooks.Verify{Scheme: "svix", Secret: svixSecret, Encoding: "hex"}, "encoding: is only used by the hmac-sha256 scheme"},
		{"prefix on stripe", webhooks.Verify{Scheme: "stripe", Secret: "s", Prefix: "x"}, "prefix: is only used by the hmac-sha256 scheme"},
		{"negative tolerance", webhooks.Verify{Scheme: "stripe", Secret: "s", ToleranceS: -1}, "tolerance_s: -1 is not between 0"},
		{"tolerance over a day", webhooks.Verify{Scheme: "svix", Secret: svixSecret, ToleranceS: 86401}, "tolerance_s: 86401 is not between 0"},
		{"tolerance on github", webhooks.Verify{Scheme: "github", Secret: "s", ToleranceS: 10}, "tolerance_s: is only used by the svix and stripe schemes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.v.Validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
			if len(tc.v.Secret) > len("whsec_") {
				require.NotContains(t, err.Error(), tc.v.Secret)
			}
		})
	}
}

func TestValidateListsEveryProblem(t *testing.T) {
	t.Parallel()
	err := webhooks.Verify{Scheme: "hmac-sha256", Encoding: "rot13", ToleranceS: -5}.Validate()
	for _, field := range []string{"header:", "encoding:", "secret:", "tolerance_s:"} {
		require.ErrorContains(t, err, field)
	}
}

// clerkBody is a user.created delivery as Clerk sends it (abridged).
const clerkBody = `{
  "data": {
    "birthday": "",
    "created_at": 1654012591514,
    "email_addresses": [
      {
        "email_address": "example@example.org",
        "id": "idn_29w83yL7CwVlJXylYLxcslromF1",
        "linked_to": [],
        "object": "email_address",
        "verification": {"status": "verified", "strategy": "ticket"}
      }
    ],
    "external_id": null,
    "first_name": "Example",
    "id": "user_29w83sxmDNGwOuEthce5gg56FcC",
    "last_name": "Example",
    "public_metadata": {},
    "two_factor_enabled": false,
    "updated_at": 1654012591835
  },
  "instance_id": "ins_123",
  "object": "event",
  "timestamp": 1654012591835,
  "type": "user.created"
}`

func compile(t *testing.T, expr string) *webhooks.Transform {
	t.Helper()
	env, err := webhooks.NewEnv()
	require.NoError(t, err)
	tr, err := env.Compile(expr)
	require.NoError(t, err)
	return tr
}

func delivery(t *testing.T, body string, h http.Header, q map[string][]string) webhooks.Delivery {
	t.Helper()
	d, err := webhooks.ParseDelivery([]byte(body), h, q)
	require.NoError(t, err)
	return d
}

func TestTransformClerk(t *testing.T) {
	t.Parallel()
	tr := compile(t, `{"name": "clerk/" + body.type, "data": body.data, "id": headers["svix-id"]}`)
	d := delivery(t, clerkBody, header("Svix-Id", "msg_2KWPBgLlAfxdpx2AI4pQnsp3hGq", "Content-Type", "application/json"), nil)
	events, err := tr.Apply(context.Background(), d)
	require.NoError(t, err)
	require.Len(t, events, 1)
	ev := events[0]
	require.Equal(t, "clerk/user.created", ev["name"])
	require.Equal(t, "msg_2KWPBgLlAfxdpx2AI4pQnsp3hGq", ev["id"])
	data := ev["data"].(map[string]any)
	require.Equal(t, "user_29w83sxmDNGwOuEthce5gg56FcC", data["id"])
	require.Equal(t, int64(1654012591514), data["created_at"])
	require.Nil(t, data["external_id"])
	require.Equal(t, false, data["two_factor_enabled"])
	require.Equal(t, map[string]any{}, data["public_metadata"])
	emails := data["email_addresses"].([]any)
	require.Equal(t, "example@example.org", emails[0].(map[string]any)["email_address"])

	// The event is exactly the delivery's data, round-tripped through JSON.
	var want map[string]any
	require.NoError(t, json.Unmarshal([]byte(clerkBody), &want))
	got, err := json.Marshal(ev)
	require.NoError(t, err)
	require.JSONEq(t, mustJSON(t, map[string]any{"name": "clerk/user.created", "id": "msg_2KWPBgLlAfxdpx2AI4pQnsp3hGq", "data": want["data"]}), string(got))
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

func TestTransformList(t *testing.T) {
	t.Parallel()
	tr := compile(t, `body.items.map(i, {"name": "shop/item", "data": {"sku": i.sku, "qty": i.qty}, "id": query["order"] + "-" + i.sku})`)
	d := delivery(t, `{"items":[{"sku":"a","qty":1},{"sku":"b","qty":2.5}]}`, nil, map[string][]string{"order": {"o1", "o2"}})
	events, err := tr.Apply(context.Background(), d)
	require.NoError(t, err)
	require.Equal(t, []map[string]any{
		{"name": "shop/item", "data": map[string]any{"sku": "a", "qty": int64(1)}, "id": "o1-a"},
		{"name": "shop/item", "data": map[string]any{"sku": "b", "qty": 2.5}, "id": "o1-b"},
	}, events)

	// An empty list drops the delivery.
	skip := compile(t, `body.type == "user.created" ? [{"name": "clerk/user.created"}] : []`)
	events, err = skip.Apply(context.Background(), delivery(t, `{"type":"session.ended"}`, nil, nil))
	require.NoError(t, err)
	require.Empty(t, events)
}

func TestTransformValues(t *testing.T) {
	t.Parallel()
	tr := compile(t, `{"name": "x/y", "ts": timestamp(body.at), "v": "1", "data": {"at": timestamp(body.at), "n": 1u, "big": 1e300, "neg": -3, "h": headers, "empty": body.missing_ok}}`)
	d := delivery(t, `{"at":"2024-05-01T12:00:00.123+02:00","missing_ok":null}`, nil, nil)
	events, err := tr.Apply(context.Background(), d)
	require.NoError(t, err)
	require.Equal(t, []map[string]any{{
		"name": "x/y",
		"ts":   time.Date(2024, 5, 1, 10, 0, 0, 123e6, time.UTC).UnixMilli(),
		"v":    "1",
		"data": map[string]any{
			"at": "2024-05-01T10:00:00.123Z", "n": int64(1), "big": 1e300, "neg": int64(-3),
			"h": map[string]any{}, "empty": nil,
		},
	}}, events)
}

func TestTransformErrors(t *testing.T) {
	t.Parallel()
	d := delivery(t, clerkBody, header("Svix-Id", "msg_1"), nil)
	for _, tc := range []struct {
		name, expr, wantErr string
	}{
		{"not a map", `body.type`, "gave string, not a map"},
		{"null", `body.data.external_id`, "gave null_type, not a map"},
		{"list of non-maps", `[body.type]`, "event 0 is string, not a map"},
		{"unknown key", `{"name": "a", "payload": body.data}`, `unknown event key "payload"`},
		{"non-string key", `dyn({1: "a"})`, "event key 1 is int, not a string"},
		{"missing field", `{"name": body.nope}`, "no such key: nope"},
		{"missing header", `{"name": headers["x-nope"]}`, "no such key"},
		{"too many events", `[` + strings.TrimSuffix(strings.Repeat(`{"name":"a"},`, 101), ",") + `]`, "gave 101 events, more than the limit of 100"},
		{"bytes", `{"name": "a", "data": {"b": b"xyz"}}`, "data.b: bytes has no JSON form"},
		{"duration", `{"name": "a", "data": {"d": duration("1s")}}`, "google.protobuf.Duration has no JSON form"},
		{"nan", `{"name": "a", "data": {"x": 0.0/0.0}}`, "NaN is not a JSON number"},
		{"division by zero", `{"name": "a", "data": {"x": 1/0}}`, "division by zero"},
		{"path in error", `{"name": "a", "data": {"items": [{"ok": 1}, {"price": {"when": duration("1s")}}]}}`, "data.items[1].price.when: google.protobuf.Duration has no JSON form"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			events, err := compile(t, tc.expr).Apply(context.Background(), d)
			require.ErrorContains(t, err, tc.wantErr)
			require.ErrorContains(t, err, "webhooks: transform ")
			require.Nil(t, events)
		})
	}
}

func TestTransformCostLimit(t *testing.T) {
	t.Parallel()
	xs := strings.TrimSuffix(strings.Repeat("1,", 1000), ",")
	tr := compile(t, `{"name": "a", "data": {"x": body.xs.map(a, body.xs.map(b, body.xs.map(c, a + b + c)))}}`)
	_, err := tr.Apply(context.Background(), delivery(t, `{"xs":[`+xs+`]}`, nil, nil))
	require.ErrorContains(t, err, "cost limit")
}

func TestTransformCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := compile(t, `{"name": "a"}`).Apply(ctx, webhooks.Delivery{})
	require.ErrorIs(t, err, context.Canceled)
}

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	env, err := webhooks.NewEnv()
	require.NoError(t, err)
	for _, tc := range []struct {
		name, expr, wantErr string
	}{
		{"empty", "  ", "expression is empty"},
		{"syntax", "{\"name\": \n  body.type +}", "line 2, column"},
		{"unknown variable", `{"name": event.name}`, "line 1, column 10: undeclared reference to 'event'"},
		{"string result", `"clerk/" + body.type`, "must evaluate to a map (one event) or a list of maps (several), not string"},
		{"list of strings", `["a", "b"]`, "not list(string)"},
		{"int-keyed map", `{1: "a"}`, "not map(int, string)"},
		{"headers are strings", `{"name": headers["a"] + 1}`, "no matching overload"},
		{"too long", `{"name": "` + strings.Repeat("a", 4096) + `"}`, "longer than the limit of 4096"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tr, err := env.Compile(tc.expr)
			require.ErrorContains(t, err, tc.wantErr)
			require.ErrorContains(t, err, "webhooks: transform ")
			require.Nil(t, tr)
		})
	}
}

func TestParseDelivery(t *testing.T) {
	t.Parallel()
	h := http.Header{"Svix-Id": {"msg_1", "msg_2"}, "X-Empty": {}}
	h["x-lower"] = []string{"raw"}
	d, err := webhooks.ParseDelivery([]byte(`{"i": 12, "f": 1.5, "e": 1e3, "big": 123456789012345678901234567890, "s": "x", "a": [1, null]}`), h,
		map[string][]string{"Order": {"o1", "o2"}, "none": {}})
	require.NoError(t, err)
	require.Equal(t, map[string]any{"i": int64(12), "f": 1.5, "e": int64(1000), "big": 1.2345678901234568e29, "s": "x", "a": []any{int64(1), nil}}, d.Body)
	require.Equal(t, map[string]string{"svix-id": "msg_1", "x-lower": "raw"}, d.Headers)
	require.Equal(t, map[string]string{"Order": "o1"}, d.Query)

	for _, empty := range []string{"", " \n"} {
		d, err = webhooks.ParseDelivery([]byte(empty), nil, nil)
		require.NoError(t, err)
		require.Nil(t, d.Body)
		require.NotNil(t, d.Headers)
		require.NotNil(t, d.Query)
	}

	for _, bad := range []string{"{", "form=1&b=2", `{"a":1} {"b":2}`, `[1e999]`} {
		_, err = webhooks.ParseDelivery([]byte(bad), nil, nil)
		require.ErrorContains(t, err, "body is not JSON: ", bad)
	}
}

// A transform over an empty body can still use the headers.
func TestTransformEmptyBody(t *testing.T) {
	t.Parallel()
	tr := compile(t, `{"name": "ping/" + headers["x-event"], "data": {"body": body}}`)
	events, err := tr.Apply(context.Background(), delivery(t, "", header("X-Event", "hello"), nil))
	require.NoError(t, err)
	require.Equal(t, []map[string]any{{"name": "ping/hello", "data": map[string]any{"body": nil}}}, events)
}

// maxApplyAlloc is the most one Apply may allocate in these tests. Without
// the limits, the transforms below ask for gigabytes.
const maxApplyAlloc = 64 << 20

// allocated returns the bytes the process allocated while f ran. Tests that
// use it must not run in parallel with others, whose allocations would count.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// amplify is the string four chained replace() calls turn the 10-byte string
// at path into: 10^5 bytes.
func amplify(path string) string {
	return path + strings.Repeat(`.replace("a","aaaaaaaaaa")`, 4)
}

// replaceBomb is a transform whose event data is X.replace("a", X), with X =
// amplify("body.s"): a 10 GB string for a body of {"s": "aaaaaaaaaa"}.
func replaceBomb() string {
	x := amplify("body.s")
	return `{"name": "bomb/replace", "data": {"s": ` + x + `.replace("a", ` + x + `)}}`
}

// nestedList is a list holding the same list 10 times, nested depth times:
// 10^depth leaves built in a few hundred bytes and microseconds.
func nestedList(depth int) string {
	ten := func(v string) string { return "[" + strings.TrimSuffix(strings.Repeat(v+",", 10), ",") + "]" }
	vars := "abcdefghij"
	expr := ten(vars[depth-1 : depth])
	for i := depth - 1; i >= 0; i-- {
		src := "[" + ten("1") + "]"
		if i > 0 {
			src = "[" + ten(vars[i-1:i]) + "]"
		}
		expr = src + ".map(" + vars[i:i+1] + ", " + expr + ")"
	}
	return expr
}

// The repro of the out-of-memory crash through a transform: one replace()
// asked for 10 GB, allocated before its cost was charged.
func TestTransformReplaceBomb(t *testing.T) {
	expr := replaceBomb()
	require.Less(t, len(expr), 300)
	tr := compile(t, expr)
	d := delivery(t, `{"s": "aaaaaaaaaa"}`, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	var events []map[string]any
	var err error
	n := allocated(func() { events, err = tr.Apply(ctx, d) })
	require.Nil(t, events)
	require.ErrorIs(t, err, triggers.ErrLimit)
	require.ErrorContains(t, err, "replace: result would be 10000000000 bytes, over the 1048576-byte limit")
	require.Less(t, n, uint64(maxApplyAlloc), "allocated %d bytes", n)
}

// A result that holds the same list many times is small to build but
// exponentially large to convert; its conversion stops at MaxResultSize.
func TestTransformResultSize(t *testing.T) {
	tr := compile(t, `{"name": "a", "data": {"x": `+nestedList(6)+`}}`)
	var events []map[string]any
	var err error
	n := allocated(func() { events, err = tr.Apply(context.Background(), webhooks.Delivery{}) })
	require.Nil(t, events)
	require.ErrorContains(t, err, "data.x[0][0][0][0][0]")
	require.ErrorContains(t, err, "result is larger than 4194304 bytes as JSON")
	require.Less(t, n, uint64(maxApplyAlloc), "allocated %d bytes", n)

	// A large result within the limit converts.
	events, err = compile(t, `{"name": "a", "data": {"x": `+nestedList(4)+`}}`).Apply(context.Background(), webhooks.Delivery{})
	require.NoError(t, err)
	require.Len(t, events, 1)
}

// A failing transform's error reaches whoever sent the delivery: it names the
// failure without quoting the transform, whose literals may hold secrets.
func TestTransformErrorHidesLiterals(t *testing.T) {
	const secret = "sk_live_51HxYzAbCdEfGhIjKl"
	d := delivery(t, `{"prefix": "12"}`, nil, nil)
	for _, tc := range []struct{ name, expr, wantErr string }{
		{"failure elsewhere", `{"name": "a", "data": {"token": "` + secret + `", "x": body.missing}}`, "no such key: missing"},
		{"failure on a value built from the literal", `{"name": "a", "data": {"t": timestamp(body.prefix + "` + secret + `")}}`, `invalid RFC 3339 timestamp "12[redacted]"`},
		{"lookup of a key built from the literal", `{"name": "a", "data": {"t": body[body.prefix + "` + secret + `"]}}`, `no such key: 12[redacted]`},
		{"time zone", `{"name": "a", "data": {"h": timestamp(0).getHours(body.prefix + "` + secret + `")}}`, `unknown time zone 12[redacted]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := compile(t, tc.expr)
			_, err := tr.Apply(context.Background(), d)
			require.ErrorContains(t, err, "webhooks: transform failed: ")
			require.ErrorContains(t, err, tc.wantErr)
			require.NotContains(t, err.Error(), secret)
			require.NotContains(t, err.Error(), "sk_live")
		})
	}

	// The operator who writes a transform sees it quoted in compile errors.
	env, err := webhooks.NewEnv()
	require.NoError(t, err)
	_, err = env.Compile(`{"name": "` + secret + `", "data": body.}`)
	require.ErrorContains(t, err, secret)
}

// FuzzTransform checks that parsing, compiling and applying any expression
// to any body never panics, that Apply returns within its deadline (100ms,
// as the ingest API gives it) having allocated less than maxApplyAlloc, and
// that what it returns is either an error or events encoding/json accepts
// with only the event keys. The seeds run in every `go test`; `go test -fuzz
// FuzzTransform ./webhooks` explores.
func FuzzTransform(f *testing.F) {
	for _, s := range []struct{ expr, body string }{
		// Transforms that build far more than they are long, each stopped
		// by a limit.
		{replaceBomb(), `{"s": "aaaaaaaaaa"}`},
		{`{"name": "a", "data": {"x": ` + nestedList(7) + `}}`, `{}`},
		{`{"name": "a", "data": [` + amplify("body.s") + `].map(x, [x+x].map(y, [y+y].map(z, [z+z].map(w, w+w+w+w))))}`, `{"s": "aaaaaaaaaa"}`},
		{`{"name": "a", "data": ` + amplify("body.s") + `.matches("` + strings.Repeat("[a-z]{100}", 30) + `")}`, `{"s": "aaaaaaaaaa"}`},
		{`{"name": "a", "data": "%s".format([` + nestedList(6) + `])}`, `{}`},
		{`{"name": "a", "data": ` + nestedList(7) + ` == ` + nestedList(7) + `}`, `{}`},
		{`[{"name": "a", "data": [(` + amplify("body.s") + ` + "a").split("")]}]`, `{"s": "aaaaaaaaaa"}`},
		{`{"name": "clerk/" + body.type, "data": body.data, "id": headers["svix-id"]}`, clerkBody},
		{`body.items.map(i, {"name": "x/" + i.sku})`, `{"items":[{"sku":"a"},{"sku":"b"}]}`},
		{`body`, `{"name":"a","data":{"x":[1,2.5,null,true]}}`},
		{`body`, `[{"name":"a"},{"name":"b","ts":1}]`},
		{`body`, `{"name":"a","extra":1}`},
		{`body`, `"just a string"`},
		{`body`, ``},
		{`body`, `{`},
		{`{"name": string(body.n), "ts": timestamp(body.t)}`, `{"n":1e308,"t":"2024-01-01T00:00:00Z"}`},
		{`{"name": "a", "data": {"x": b"\xff", "y": duration("1h")}}`, `{}`},
		{`[{"name": "a"}, 1]`, `{}`},
		{`{"name": "a", "data": {"x": body.a / body.b}}`, `{"a":1,"b":0}`},
		{`{"name": "a", "data": {"u": 18446744073709551615u}}`, `{}`},
		{`dyn([[{"name":"a"}]])`, `{}`},
		{`{"name": body.x.y.z}`, `{"x":{"y":[1]}}`},
		{`"a"`, `1`},
	} {
		f.Add(s.expr, []byte(s.body))
	}
	env, err := webhooks.NewEnv()
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, expr string, body []byte) {
		d, err := webhooks.ParseDelivery(body, http.Header{"Svix-Id": {"msg_1"}}, map[string][]string{"q": {"1"}})
		if err != nil {
			return
		}
		tr, err := env.Compile(expr)
		if err != nil {
			return
		}
		const deadline = 100 * time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		var events []map[string]any
		done := make(chan struct{})
		n := allocated(func() {
			go func() {
				defer close(done)
				events, err = tr.Apply(ctx, d)
			}()
			select {
			case <-done:
			case <-time.After(deadline + 5*time.Second):
				t.Fatalf("Apply(%q) did not return 5s after its deadline", expr)
			}
		})
		require.Less(t, n, uint64(maxApplyAlloc), "Apply(%q) allocated %d bytes", expr, n)
		if err != nil {
			require.Nil(t, events)
			return
		}
		require.LessOrEqual(t, len(events), 100)
		for _, ev := range events {
			for k := range ev {
				require.Contains(t, []string{"name", "data", "id", "ts", "v"}, k)
			}
			_, err := json.Marshal(ev)
			require.NoError(t, err)
		}
	})
}

func ExampleTransform_Apply() {
	env, err := webhooks.NewEnv()
	if err != nil {
		panic(err)
	}
	tr, err := env.Compile(`{"name": "clerk/" + body.type, "data": {"user": body.data.id}, "id": headers["svix-id"]}`)
	if err != nil {
		panic(err)
	}
	d, err := webhooks.ParseDelivery([]byte(clerkBody), http.Header{"Svix-Id": {"msg_1"}}, nil)
	if err != nil {
		panic(err)
	}
	events, err := tr.Apply(context.Background(), d)
	if err != nil {
		panic(err)
	}
	out, _ := json.Marshal(events)
	fmt.Println(string(out))
	// Output: [{"data":{"user":"user_29w83sxmDNGwOuEthce5gg56FcC"},"id":"msg_1","name":"clerk/user.created"}]
}
