package postgres

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/herald-run/herald/store"
)

const webhookColumns = `id, name, transform, verify, allow_events, created_at, updated_at`

func scanWebhook(row pgx.Row) (store.Webhook, error) {
	var (
		w             store.Webhook
		verify, allow []byte
	)
	if err := row.Scan(&w.ID, &w.Name, &w.Transform, &verify, &allow, &w.CreatedAt, &w.UpdatedAt); err != nil {
		return w, err
	}
	w.Verify = json.RawMessage(verify)
	w.CreatedAt, w.UpdatedAt = w.CreatedAt.UTC(), w.UpdatedAt.UTC()
	var err error
	w.AllowEvents, err = store.DecodeAllowEvents(allow)
	return w, err
}

// CreateWebhook stores a new webhook source.
func (d *Driver) CreateWebhook(ctx context.Context, w store.Webhook) error {
	_, err := d.pool.Exec(ctx, `INSERT INTO webhooks (`+webhookColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		w.ID, w.Name, w.Transform, string(w.Verify), string(store.EncodeAllowEvents(w.AllowEvents)), w.CreatedAt, w.UpdatedAt)
	if err != nil {
		return wrapErr("create webhook", err)
	}
	return nil
}

// GetWebhook reads a webhook source.
func (d *Driver) GetWebhook(ctx context.Context, id string) (store.Webhook, error) {
	w, err := scanWebhook(d.pool.QueryRow(ctx, `SELECT `+webhookColumns+` FROM webhooks WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return w, store.ErrNotFound
	}
	if err != nil {
		return w, wrapErr("get webhook", err)
	}
	return w, nil
}

// ListWebhooks reads every webhook source, by id.
func (d *Driver) ListWebhooks(ctx context.Context) ([]store.Webhook, error) {
	rows, err := d.pool.Query(ctx, `SELECT `+webhookColumns+` FROM webhooks ORDER BY id`)
	if err != nil {
		return nil, wrapErr("list webhooks", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Webhook, error) { return scanWebhook(row) })
	if err != nil {
		return nil, wrapErr("list webhooks", err)
	}
	return out, nil
}

// UpdateWebhook replaces a webhook source's settings.
func (d *Driver) UpdateWebhook(ctx context.Context, w store.Webhook) error {
	tag, err := d.pool.Exec(ctx, `UPDATE webhooks SET name = $2, transform = $3, verify = $4, allow_events = $5, updated_at = $6
		WHERE id = $1`, w.ID, w.Name, w.Transform, string(w.Verify), string(store.EncodeAllowEvents(w.AllowEvents)), w.UpdatedAt)
	if err != nil {
		return wrapErr("update webhook", err)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

// DeleteWebhook removes a webhook source.
func (d *Driver) DeleteWebhook(ctx context.Context, id string) error {
	tag, err := d.pool.Exec(ctx, `DELETE FROM webhooks WHERE id = $1`, id)
	if err != nil {
		return wrapErr("delete webhook", err)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}
