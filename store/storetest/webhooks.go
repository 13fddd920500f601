package storetest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-run/herald/store"
)

func webhook(id, name string) store.Webhook {
	return store.Webhook{
		ID: id, Name: name,
		Transform:   `{"name": "clerk/" + body.type, "data": body.data}`,
		Verify:      json.RawMessage(`{"scheme":"svix","secret":"whsec_c2VjcmV0"}`),
		AllowEvents: []string{"clerk/*"},
		CreatedAt:   base, UpdatedAt: base,
	}
}

func testWebhooksCRUD(t *testing.T, s store.Driver) {
	list, err := s.ListWebhooks(ctx(t))
	require.NoError(t, err)
	require.Empty(t, list)

	a, b := webhook("wh_b", "clerk"), webhook("wh_a", "github")
	b.Transform, b.AllowEvents = "", nil
	b.Verify = json.RawMessage(`{"scheme":"github","secret":"s3cret"}`)
	require.NoError(t, s.CreateWebhook(ctx(t), a))
	require.NoError(t, s.CreateWebhook(ctx(t), b))
	require.Error(t, s.CreateWebhook(ctx(t), a), "an id already stored")

	got, err := s.GetWebhook(ctx(t), "wh_b")
	require.NoError(t, err)
	require.JSONEq(t, string(a.Verify), string(got.Verify))
	got.Verify = a.Verify
	require.Equal(t, a, got)

	list, err = s.ListWebhooks(ctx(t))
	require.NoError(t, err)
	require.Len(t, list, 2)
	require.Equal(t, "wh_a", list[0].ID, "ordered by id")
	require.Nil(t, list[0].AllowEvents, "no patterns read back as nil")
	require.Equal(t, "", list[0].Transform)
	require.Equal(t, "wh_b", list[1].ID)

	upd := a
	upd.Name, upd.Transform, upd.AllowEvents = "clerk-prod", "", []string{"clerk/user.*", "clerk/session.created"}
	upd.Verify = json.RawMessage(`{"scheme":"svix","secret":"whsec_bmV3"}`)
	upd.CreatedAt, upd.UpdatedAt = base.Add(time.Hour), base.Add(time.Minute)
	require.NoError(t, s.UpdateWebhook(ctx(t), upd))
	got, err = s.GetWebhook(ctx(t), "wh_b")
	require.NoError(t, err)
	require.JSONEq(t, string(upd.Verify), string(got.Verify))
	require.Equal(t, "clerk-prod", got.Name)
	require.Equal(t, "", got.Transform)
	require.Equal(t, upd.AllowEvents, got.AllowEvents)
	require.True(t, got.CreatedAt.Equal(base), "created_at is kept")
	require.True(t, got.UpdatedAt.Equal(base.Add(time.Minute)))

	missing := webhook("wh_missing", "x")
	require.ErrorIs(t, s.UpdateWebhook(ctx(t), missing), store.ErrNotFound)

	require.NoError(t, s.DeleteWebhook(ctx(t), "wh_b"))
	_, err = s.GetWebhook(ctx(t), "wh_b")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.ErrorIs(t, s.DeleteWebhook(ctx(t), "wh_b"), store.ErrNotFound)
	list, err = s.ListWebhooks(ctx(t))
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, "wh_a", list[0].ID)
}

func testWebhookInvalidVerify(t *testing.T, s store.Driver) {
	w := webhook("wh_bad", "bad")
	w.Verify = json.RawMessage(`{not json`)
	require.ErrorIs(t, s.CreateWebhook(ctx(t), w), store.ErrInvalidData)
	_, err := s.GetWebhook(ctx(t), "wh_bad")
	require.ErrorIs(t, err, store.ErrNotFound)
}
