// Package activities holds the Temporal activities Herald registers on every
// worker: sending events from a step, registering a wait, recording a run's
// outcome (which also emits the herald/function.* system event), and asking
// a concurrency semaphore for a slot. They talk to Herald's HTTP
// API with the signing key; a worker never needs database credentials.
package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/herald-run/herald/internal/wire"
)

// Client calls Herald's API on behalf of workflows.
type Client struct {
	// BaseURL is Herald's base URL, e.g. http://127.0.0.1:8288.
	BaseURL string
	// SigningKey is sent as a bearer token; empty against `herald dev`.
	SigningKey string
	// HTTP is the client used; nil means one with a 30s timeout.
	HTTP *http.Client
}

// SendEventsInput is the input of SendEvents.
type SendEventsInput struct {
	Events []wire.Event `json:"events"`
}

// SendEvents stores events through Herald's durable ingest. Every event has
// an id derived from the run and step, so a retried attempt is deduplicated
// by Herald instead of sending twice.
func (c *Client) SendEvents(ctx context.Context, in SendEventsInput) ([]string, error) {
	var out struct {
		IDs []string `json:"ids"`
	}
	if err := c.post(ctx, "/v1/events", in.Events, &out); err != nil {
		return nil, err
	}
	return out.IDs, nil
}

// RegisterWait registers a step.WaitForEvent with Herald. When an event that
// arrived while the wait was being registered already resolves it, the reply
// carries that event.
func (c *Client) RegisterWait(ctx context.Context, in wire.WaitRegister) (wire.WaitRegistered, error) {
	var out wire.WaitRegistered
	err := c.post(ctx, "/v1/waits", in, &out)
	return out, err
}

// FinishRun records a run's outcome in Herald and emits its system event.
func (c *Client) FinishRun(ctx context.Context, runID string, in wire.RunFinish) error {
	return c.post(ctx, "/v1/runs/"+url.PathEscape(runID)+"/finish", in, nil)
}

func (c *Client) post(ctx context.Context, path string, body, out any) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return temporal.NewNonRetryableApplicationError("encode request: "+err.Error(), "herald.Encode", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.BaseURL, "/")+path, bytes.NewReader(raw))
	if err != nil {
		return temporal.NewNonRetryableApplicationError(err.Error(), "herald.Request", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.SigningKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.SigningKey)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("herald API %s: %w", path, err)
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == http.StatusOK:
		if out != nil {
			return json.Unmarshal(reply, out)
		}
		return nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusRequestTimeout:
		// Herald refused the request itself; sending it again changes nothing.
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("herald API %s: %s: %s", path, resp.Status, reply), "herald.Rejected", nil)
	default:
		return fmt.Errorf("herald API %s: %s: %s", path, resp.Status, reply)
	}
}
