package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/oklog/ulid/v2"

	"github.com/herald-run/herald/store"
	"github.com/herald-run/herald/triggers"
	"github.com/herald-run/herald/webhooks"
)

// Webhook source limits.
const (
	// MaxAllowEvents is the most patterns in allow_events.
	MaxAllowEvents = 100
	// TransformTimeout bounds one transform evaluation, on top of its cost limit.
	TransformTimeout = 100 * time.Millisecond
	// webhookIDPrefix starts every webhook source id.
	webhookIDPrefix = "wh_"
)

var webhookName = regexp.MustCompile(`^[a-z0-9._-]{1,64}$`)

// WebhookJSON is a webhook source as the REST API returns it: never with its
// secret.
type WebhookJSON struct {
	ID string `json:"id"`
	// URL is where the sending service posts its deliveries (POST /w/{id}).
	URL         string     `json:"url"`
	Name        string     `json:"name"`
	Transform   string     `json:"transform"`
	Verify      VerifyJSON `json:"verify"`
	AllowEvents []string   `json:"allow_events"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
}

// VerifyJSON is webhooks.Verify without the secret: SecretSet only says
// whether one is stored.
type VerifyJSON struct {
	Scheme     string `json:"scheme"`
	SecretSet  bool   `json:"secret_set"`
	Header     string `json:"header,omitempty"`
	Encoding   string `json:"encoding,omitempty"`
	Prefix     string `json:"prefix,omitempty"`
	ToleranceS int    `json:"tolerance_s,omitempty"`
}

// webhookRequest is the body of POST and PATCH /v1/webhooks; an absent field
// is left unchanged by PATCH.
type webhookRequest struct {
	Name        *string         `json:"name"`
	Transform   *string         `json:"transform"`
	Verify      json.RawMessage `json:"verify"`
	AllowEvents *[]string       `json:"allow_events"`
}

// transformCache keeps compiled transforms by expression, so a delivery does
// not compile its source's transform again.
type transformCache struct {
	env *webhooks.Env
	mu  sync.Mutex
	m   map[string]*webhooks.Transform
}

const transformCacheSize = 1024

func (tc *transformCache) get(expr string) (*webhooks.Transform, error) {
	tc.mu.Lock()
	t, ok := tc.m[expr]
	tc.mu.Unlock()
	if ok {
		return t, nil
	}
	t, err := tc.env.Compile(expr)
	if err != nil {
		return nil, err
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if tc.m == nil {
		tc.m = make(map[string]*webhooks.Transform)
	}
	if len(tc.m) >= transformCacheSize {
		for k := range tc.m { // drop an arbitrary entry; it compiles again when needed
			delete(tc.m, k)
			break
		}
	}
	tc.m[expr] = t
	return t, nil
}

// webhookURL is the public URL of a source's deliveries: under
// Config.PublicURL, or else the scheme and host the request came to.
func (s *Server) webhookURL(c *gin.Context, id string) string {
	base := s.cfg.PublicURL
	if base == "" {
		scheme := "http"
		if c.Request.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + c.Request.Host
	}
	return strings.TrimRight(base, "/") + "/w/" + url.PathEscape(id)
}

func (s *Server) toWebhookJSON(c *gin.Context, w store.Webhook) WebhookJSON {
	var v webhooks.Verify
	_ = json.Unmarshal(w.Verify, &v) // stored by this API, so it decodes
	allow := w.AllowEvents
	if allow == nil {
		allow = []string{}
	}
	return WebhookJSON{
		ID: w.ID, URL: s.webhookURL(c, w.ID), Name: w.Name, Transform: w.Transform,
		Verify: VerifyJSON{Scheme: v.Scheme, SecretSet: v.Secret != "", Header: v.Header, Encoding: v.Encoding,
			Prefix: v.Prefix, ToleranceS: v.ToleranceS},
		AllowEvents: allow, CreatedAt: w.CreatedAt.UTC(), UpdatedAt: w.UpdatedAt.UTC(),
	}
}

// decodeStrict decodes one JSON value, refusing fields out does not have.
func decodeStrict(r io.Reader, out any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}

func (s *Server) readWebhookRequest(c *gin.Context) (webhookRequest, bool) {
	var req webhookRequest
	if err := decodeStrict(http.MaxBytesReader(c.Writer, c.Request.Body, s.limits.MaxBodyBytes), &req); err != nil {
		writeError(c, http.StatusBadRequest, "webhook body: not valid JSON for this request: "+err.Error())
		return req, false
	}
	return req, true
}

// applyWebhookRequest applies req to w (every field for a create, the
// present ones for a patch) and validates the result. Its error names the
// field and the rule.
func (s *Server) applyWebhookRequest(w *store.Webhook, req webhookRequest, create bool) error {
	if req.Name != nil {
		w.Name = *req.Name
	}
	if !webhookName.MatchString(w.Name) {
		if create && req.Name == nil {
			return errors.New("name: is required")
		}
		return errors.New("name: must be 1 to 64 characters of a-z, 0-9, '.', '_' and '-'")
	}
	if req.Transform != nil {
		w.Transform = strings.TrimSpace(*req.Transform)
	}
	if w.Transform != "" {
		if _, err := s.transforms.get(w.Transform); err != nil {
			return errors.New(trimPkg(err)) // `transform "<expr>": line 1, column 5: ...`
		}
	}
	if len(req.Verify) > 0 && !bytes.Equal(bytes.TrimSpace(req.Verify), []byte("null")) {
		var v webhooks.Verify
		if err := decodeStrict(bytes.NewReader(req.Verify), &v); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		var old webhooks.Verify
		if len(w.Verify) > 0 && json.Unmarshal(w.Verify, &old) == nil && v.Secret == "" && v.Scheme == old.Scheme {
			// The API never returns the secret, so a patch that changes
			// other settings of the same scheme keeps the stored one.
			v.Secret = old.Secret
		}
		if err := v.Validate(); err != nil {
			return errors.New("verify: " + strings.TrimPrefix(err.Error(), "webhooks: invalid verify: "))
		}
		raw, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		w.Verify = raw
	} else if create {
		return errors.New(`verify: is required, e.g. {"scheme":"svix","secret":"whsec_..."}`)
	}
	if req.AllowEvents != nil {
		w.AllowEvents = *req.AllowEvents
	}
	if len(w.AllowEvents) > MaxAllowEvents {
		return fmt.Errorf("allow_events: at most %d patterns", MaxAllowEvents)
	}
	for i, p := range w.AllowEvents {
		if err := triggers.ValidatePattern(p); err != nil {
			return fmt.Errorf("allow_events[%d]: %w", i, err)
		}
	}
	if len(w.AllowEvents) == 0 {
		w.AllowEvents = nil
	}
	return nil
}

// handleCreateWebhook serves POST /v1/webhooks.
func (s *Server) handleCreateWebhook(c *gin.Context) {
	req, ok := s.readWebhookRequest(c)
	if !ok {
		return
	}
	now := time.Now().UTC()
	w := store.Webhook{ID: webhookIDPrefix + ulid.Make().String(), CreatedAt: now, UpdatedAt: now}
	if err := s.applyWebhookRequest(&w, req, true); err != nil {
		writeError(c, http.StatusBadRequest, err.Error())
		return
	}
	if err := s.cfg.Store.CreateWebhook(c.Request.Context(), w); err != nil {
		s.storeError(c, err)
		return
	}
	c.JSON(http.StatusCreated, s.toWebhookJSON(c, w))
}

// getWebhook reads the source named by the :id parameter; when it cannot it
// has replied (404 or a store error).
func (s *Server) getWebhook(c *gin.Context) (store.Webhook, bool) {
	w, err := s.cfg.Store.GetWebhook(c.Request.Context(), c.Param("id"))
	return w, s.webhookStored(c, err)
}

// webhookStored reports whether a store call on the webhook of the route's
// id succeeded, answering 404 or the store error otherwise.
func (s *Server) webhookStored(c *gin.Context, err error) bool {
	if errors.Is(err, store.ErrNotFound) {
		writeError(c, http.StatusNotFound, fmt.Sprintf("no webhook with id %q", c.Param("id")))
		return false
	}
	if err != nil {
		s.storeError(c, err)
		return false
	}
	return true
}

func (s *Server) handleListWebhooks(c *gin.Context) {
	list, err := s.cfg.Store.ListWebhooks(c.Request.Context())
	if err != nil {
		s.storeError(c, err)
		return
	}
	out := make([]WebhookJSON, len(list))
	for i, w := range list {
		out[i] = s.toWebhookJSON(c, w)
	}
	c.JSON(http.StatusOK, gin.H{"data": out})
}

func (s *Server) handleGetWebhook(c *gin.Context) {
	if w, ok := s.getWebhook(c); ok {
		c.JSON(http.StatusOK, gin.H{"data": s.toWebhookJSON(c, w)})
	}
}

// handleUpdateWebhook serves PATCH /v1/webhooks/{id}: the fields present
// replace the stored ones; a verify without a secret keeps the stored secret
// when the scheme is unchanged.
func (s *Server) handleUpdateWebhook(c *gin.Context) {
	w, ok := s.getWebhook(c)
	if !ok {
		return
	}
	req, ok := s.readWebhookRequest(c)
	if !ok {
		return
	}
	if err := s.applyWebhookRequest(&w, req, false); err != nil {
		writeError(c, http.StatusBadRequest, err.Error())
		return
	}
	w.UpdatedAt = time.Now().UTC()
	if !s.webhookStored(c, s.cfg.Store.UpdateWebhook(c.Request.Context(), w)) {
		return
	}
	c.JSON(http.StatusOK, gin.H{"data": s.toWebhookJSON(c, w)})
}

func (s *Server) handleDeleteWebhook(c *gin.Context) {
	if !s.webhookStored(c, s.cfg.Store.DeleteWebhook(c.Request.Context(), c.Param("id"))) {
		return
	}
	c.Status(http.StatusNoContent)
	c.Writer.WriteHeaderNow()
}

// handleWebhookDelivery serves POST /w/{id}: it verifies the delivery's
// signature against the raw body, turns the delivery into events with the
// source's transform and ingests them like POST /e. Neither the secret nor
// the signature is ever logged.
func (s *Server) handleWebhookDelivery(c *gin.Context) {
	w, ok := s.getWebhook(c)
	if !ok {
		return
	}
	body, ok := s.readBody(c)
	if !ok {
		return
	}
	var v webhooks.Verify
	if err := json.Unmarshal(w.Verify, &v); err != nil {
		s.log.Error("webhook source has unreadable verify settings", "webhook", w.ID)
		writeError(c, http.StatusInternalServerError, "this webhook's verify settings cannot be read; update them with PATCH /v1/webhooks/"+w.ID)
		return
	}
	deliveryID, err := v.Check(body, c.Request.Header, time.Now())
	if err != nil {
		var se *webhooks.SignatureError
		if !errors.As(err, &se) {
			// The source's settings are at fault, not the delivery: a 5xx
			// makes the sender retry once they are fixed.
			s.log.Error("webhook source cannot verify deliveries", "webhook", w.ID, "err", err)
			writeError(c, http.StatusInternalServerError, "this webhook's verify settings are invalid; fix them with PATCH /v1/webhooks/"+w.ID+": "+err.Error())
			return
		}
		s.metrics.rejected.WithLabelValues("unauthorized").Inc()
		writeError(c, http.StatusUnauthorized, se.Error())
		return
	}
	events, err := s.deliveryEvents(c, w, v.Scheme, deliveryID, body)
	var broken *brokenSourceError
	if errors.As(err, &broken) {
		s.log.Error("webhook source's transform does not compile", "webhook", w.ID, "err", broken.err)
		writeError(c, http.StatusInternalServerError, "this webhook's transform does not compile; fix it with PATCH /v1/webhooks/"+w.ID)
		return
	}
	if err != nil {
		s.metrics.rejected.WithLabelValues("invalid").Inc()
		writeError(c, http.StatusBadRequest, err.Error())
		return
	}
	if len(events) == 0 {
		// The transform skipped this delivery: acknowledge it, store nothing.
		c.JSON(http.StatusOK, ingestResponse{IDs: []string{}, Status: http.StatusOK})
		return
	}
	raw, err := json.Marshal(events)
	if err != nil {
		s.metrics.rejected.WithLabelValues("invalid").Inc()
		writeError(c, http.StatusBadRequest, "transform: its result is not JSON: "+err.Error())
		return
	}
	s.ingestBody(c, raw, false, func(events []store.Event) error { return checkAllowed(w.AllowEvents, events) })
}

// deliveryEvents turns a verified delivery into events (JSON-ready maps),
// with the delivery id as the default event id.
func (s *Server) deliveryEvents(c *gin.Context, w store.Webhook, scheme, deliveryID string, body []byte) ([]map[string]any, error) {
	d, err := webhooks.ParseDelivery(body, c.Request.Header, c.Request.URL.Query())
	if err != nil {
		return nil, errors.New(trimPkg(err)) // "body is not JSON: ..."
	}
	if deliveryID == "" && scheme == webhooks.SchemeStripe {
		// Stripe puts its event id, the same on every retry, in the body.
		if m, ok := d.Body.(map[string]any); ok {
			deliveryID, _ = m["id"].(string)
		}
	}
	var events []map[string]any
	if w.Transform == "" {
		var data any = d.Body
		if trimmed := bytes.TrimSpace(body); len(trimmed) > 0 {
			data = json.RawMessage(trimmed) // the sender's bytes, numbers untouched
		}
		events = []map[string]any{{"name": "webhook/" + w.Name, "data": data}}
	} else {
		t, err := s.transforms.get(w.Transform)
		if err != nil {
			// Compiled when the source was saved; a newer Herald's limits
			// may refuse it. The source's owner must fix it: the sender is
			// told so, without the transform.
			return nil, &brokenSourceError{err: err}
		}
		ctx, cancel := context.WithTimeout(c.Request.Context(), TransformTimeout)
		defer cancel()
		if events, err = t.Apply(ctx, d); err != nil {
			return nil, errors.New(trimPkg(err)) // "transform failed: ...", without the transform
		}
	}
	if deliveryID != "" {
		for i, e := range events {
			if e == nil || !noEventID(e["id"]) {
				continue
			}
			id := deliveryID
			if len(events) > 1 {
				id += "/" + strconv.Itoa(i) // distinct, and the same on every redelivery
			}
			e["id"] = id
		}
	}
	return events, nil
}

// brokenSourceError is a stored source that can no longer turn deliveries
// into events: its owner, not the sender, must act.
type brokenSourceError struct{ err error }

func (e *brokenSourceError) Error() string { return "webhook source: " + e.err.Error() }

// noEventID reports whether an event's id value leaves the id to Herald.
func noEventID(id any) bool {
	switch id := id.(type) {
	case nil:
		return true
	case string:
		return id == ""
	}
	return false
}

// checkAllowed refuses an event whose name matches none of patterns; no
// patterns allow any name.
func checkAllowed(patterns []string, events []store.Event) error {
	if len(patterns) == 0 {
		return nil
	}
	for i, e := range events {
		allowed := false
		for _, p := range patterns {
			if triggers.MatchName(p, e.Name) {
				allowed = true
				break
			}
		}
		if !allowed {
			return &ValidationError{Index: i, Field: "name", Rule: fmt.Sprintf("%q is not allowed by this webhook's allow_events %q", e.Name, patterns)}
		}
	}
	return nil
}

// trimPkg is the message of an error of package webhooks without its
// package prefix, for an API reply.
func trimPkg(err error) string { return strings.TrimPrefix(err.Error(), "webhooks: ") }
