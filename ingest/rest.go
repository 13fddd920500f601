package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/herald-run/herald/store"
)

// EventJSON is an event as the REST API returns it.
type EventJSON struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`
	Data       json.RawMessage `json:"data"`
	TS         int64           `json:"ts"`
	V          string          `json:"v"`
	ReceivedAt time.Time       `json:"received_at"`
}

func toEventJSON(e store.Event) EventJSON {
	return EventJSON{ID: e.ID, Name: e.Name, Data: e.Data, TS: e.TS, V: e.V, ReceivedAt: e.ReceivedAt.UTC()}
}

func (s *Server) handleGetEvent(c *gin.Context) {
	e, err := s.cfg.Store.GetEvent(c.Request.Context(), c.Param("id"))
	if errors.Is(err, store.ErrNotFound) {
		writeError(c, http.StatusNotFound, fmt.Sprintf("no event with id %q", c.Param("id")))
		return
	}
	if err != nil {
		s.storeError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"data": toEventJSON(e)})
}

func (s *Server) handleListEvents(c *gin.Context) {
	var f store.EventFilter
	f.Name = c.Query("name")
	var err error
	if f.ReceivedAfter, err = parseTimeParam(c.Query("received_after")); err != nil {
		writeError(c, http.StatusBadRequest, "received_after: "+err.Error())
		return
	}
	if f.ReceivedBefore, err = parseTimeParam(c.Query("received_before")); err != nil {
		writeError(c, http.StatusBadRequest, "received_before: "+err.Error())
		return
	}
	var ok bool
	if f.Limit, ok = limitParam(c); !ok {
		return
	}
	f.Cursor = c.Query("cursor")
	events, next, err := s.cfg.Store.ListEvents(c.Request.Context(), f)
	if !s.listed(c, err) {
		return
	}
	out := make([]EventJSON, len(events))
	for i, e := range events {
		out[i] = toEventJSON(e)
	}
	c.JSON(http.StatusOK, gin.H{"data": out, "cursor": next})
}

func (s *Server) storeError(c *gin.Context, err error) {
	s.log.Error("store request failed", "path", c.FullPath(), "err", err)
	c.Header("Retry-After", "1")
	writeError(c, http.StatusServiceUnavailable, "the store is unavailable; retry the request")
}

// Times a REST filter may name: from the Unix epoch to the end of year 9999,
// which every store and time format holds.
var (
	minFilterTime = time.Unix(0, 0).UTC()
	maxFilterTime = time.Date(9999, 12, 31, 23, 59, 59, 999_000_000, time.UTC)
)

// parseTimeParam accepts RFC 3339 or integer milliseconds since the epoch,
// from 1970 to the end of year 9999; the empty string is the zero time.
func parseTimeParam(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	var t time.Time
	if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
		if ms < 0 || ms > maxFilterTime.UnixMilli() {
			return time.Time{}, fmt.Errorf("must be between 0 and %d milliseconds since the Unix epoch (the end of year 9999)", maxFilterTime.UnixMilli())
		}
		t = time.UnixMilli(ms).UTC()
	} else if t, err = time.Parse(time.RFC3339Nano, v); err != nil {
		return time.Time{}, errors.New("must be an RFC 3339 time (2026-01-02T15:04:05Z) or milliseconds since the Unix epoch")
	}
	if t.Before(minFilterTime) || t.After(maxFilterTime) {
		return time.Time{}, errors.New("must be between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z")
	}
	return t, nil
}
