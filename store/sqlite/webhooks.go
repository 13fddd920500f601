package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/herald-run/herald/store"
)

const webhookColumns = `id, name, transform, verify, allow_events, created_at, updated_at`

// rowScanner is what *sql.Row and *sql.Rows offer.
type rowScanner interface{ Scan(dest ...any) error }

func scanWebhook(row rowScanner) (store.Webhook, error) {
	var (
		w                store.Webhook
		verify, allow    string
		created, updated int64
	)
	if err := row.Scan(&w.ID, &w.Name, &w.Transform, &verify, &allow, &created, &updated); err != nil {
		return w, err
	}
	w.Verify = json.RawMessage(verify)
	w.CreatedAt, w.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	var err error
	w.AllowEvents, err = store.DecodeAllowEvents([]byte(allow))
	return w, err
}

// validVerify guards what Postgres checks with jsonb: verify is a JSON object.
func validVerify(v json.RawMessage) error {
	var obj map[string]any
	if err := json.Unmarshal(v, &obj); err != nil || obj == nil {
		return fmt.Errorf("%w: verify must be a JSON object", store.ErrInvalidData)
	}
	return nil
}

// CreateWebhook stores a new webhook source.
func (d *Driver) CreateWebhook(ctx context.Context, w store.Webhook) error {
	if err := validVerify(w.Verify); err != nil {
		return fmt.Errorf("sqlite: create webhook: %w", err)
	}
	_, err := d.db.ExecContext(ctx, `INSERT INTO webhooks (`+webhookColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		w.ID, w.Name, w.Transform, string(w.Verify), string(store.EncodeAllowEvents(w.AllowEvents)),
		w.CreatedAt.UnixMilli(), w.UpdatedAt.UnixMilli())
	if err != nil {
		return fmt.Errorf("sqlite: create webhook: %w", err)
	}
	return nil
}

// GetWebhook reads a webhook source.
func (d *Driver) GetWebhook(ctx context.Context, id string) (store.Webhook, error) {
	w, err := scanWebhook(d.db.QueryRowContext(ctx, `SELECT `+webhookColumns+` FROM webhooks WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return w, store.ErrNotFound
	}
	if err != nil {
		return w, fmt.Errorf("sqlite: get webhook: %w", err)
	}
	return w, nil
}

// ListWebhooks reads every webhook source, by id.
func (d *Driver) ListWebhooks(ctx context.Context) ([]store.Webhook, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT `+webhookColumns+` FROM webhooks ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list webhooks: %w", err)
	}
	defer rows.Close()
	var out []store.Webhook
	for rows.Next() {
		w, err := scanWebhook(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list webhooks: %w", err)
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// UpdateWebhook replaces a webhook source's settings.
func (d *Driver) UpdateWebhook(ctx context.Context, w store.Webhook) error {
	if err := validVerify(w.Verify); err != nil {
		return fmt.Errorf("sqlite: update webhook: %w", err)
	}
	res, err := d.db.ExecContext(ctx, `UPDATE webhooks SET name = ?, transform = ?, verify = ?, allow_events = ?, updated_at = ?
		WHERE id = ?`, w.Name, w.Transform, string(w.Verify), string(store.EncodeAllowEvents(w.AllowEvents)), w.UpdatedAt.UnixMilli(), w.ID)
	if err != nil {
		return fmt.Errorf("sqlite: update webhook: %w", err)
	}
	return notFoundIfNone(res)
}

// DeleteWebhook removes a webhook source.
func (d *Driver) DeleteWebhook(ctx context.Context, id string) error {
	res, err := d.db.ExecContext(ctx, `DELETE FROM webhooks WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("sqlite: delete webhook: %w", err)
	}
	return notFoundIfNone(res)
}

func notFoundIfNone(res sql.Result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}
