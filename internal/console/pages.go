package console

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/triggers"
)

const (
	// streamWindow is how many events a page of the stream shows.
	streamWindow = 25
	// patternScan bounds how many events one page of a pattern filter
	// reads: the API filters by exact name only.
	patternScan = 1000
	// pageSize is the page size of the runs and waits lists.
	pageSize = 50
)

// missing is the message shown where this Herald's API lacks an endpoint.
func missing(endpoint string) string {
	return "This Herald's API does not serve " + endpoint + " yet, so this part of the console is not available."
}

// eventRow is one event of the stream with its runs' outcomes.
type eventRow struct {
	Event    eventJSON
	Runs     int
	Outcomes []outcome
	RunsErr  string
}

type eventsPage struct {
	Query   string
	Rows    []eventRow
	Next    string
	Cursor  string
	Scanned int
	Error   string
	// Live is set on the stream's first page, which polls for new events.
	Live bool
	Send sendForm
	// Functions are the synced functions with what starts them, at most
	// functionsShown of them; FunctionsTotal counts them all.
	Functions      []functionSummary
	FunctionsTotal int
}

// functionsShown bounds the functions listed beside the stream.
const functionsShown = 12

// functionSummary is a function as the events page lists it.
type functionSummary struct {
	ID, Name string
	Triggers []string
	Paused   bool
}

// sendForm is the send-event form with the values entered and, after a
// refusal, the error next to the field at fault.
type sendForm struct {
	Name, Data, ID string
	Errors         map[string]string
	Error          string
	SentID         string
}

func (c *handler) handleEvents(w http.ResponseWriter, r *http.Request) {
	p := c.loadEvents(r)
	p.Send = sendForm{Data: "{}"}
	c.loadFunctionSummaries(r, &p)
	c.render(w, r, http.StatusOK, "events", p)
}

// loadFunctionSummaries lists the synced functions beside the stream, so
// a first visit shows what events start what.
func (c *handler) loadFunctionSummaries(r *http.Request, p *eventsPage) {
	var fns list[functionJSON]
	if err := c.call(r, http.MethodGet, "/v1/functions", nil, nil, &fns); err != nil {
		return
	}
	p.FunctionsTotal = len(fns.Data)
	for i, f := range fns.Data {
		if i == functionsShown {
			break
		}
		s := functionSummary{ID: f.ID, Name: f.Name, Paused: f.Paused}
		for _, t := range f.Triggers {
			switch {
			case t.Cron != "":
				s.Triggers = append(s.Triggers, "cron "+t.Cron)
			case t.If != "":
				s.Triggers = append(s.Triggers, t.Event+" if "+t.If)
			default:
				s.Triggers = append(s.Triggers, t.Event)
			}
		}
		p.Functions = append(p.Functions, s)
	}
}

// handleStream serves the stream's rows alone; the page's script polls it.
func (c *handler) handleStream(w http.ResponseWriter, r *http.Request) {
	p := c.loadEvents(r)
	c.renderBlock(w, r, http.StatusOK, "events", "rows", p)
}

func (c *handler) loadEvents(r *http.Request) eventsPage {
	q := r.URL.Query()
	p := eventsPage{Query: strings.TrimSpace(q.Get("q")), Cursor: q.Get("cursor")}
	p.Live = p.Cursor == ""
	var events []eventJSON
	if strings.Contains(p.Query, "*") {
		if err := triggers.ValidatePattern(p.Query); err != nil {
			p.Error = strings.TrimPrefix(err.Error(), "triggers: ")
			return p
		}
		// Read pages until a window's worth matches, or patternScan
		// events were read; the next page continues from there.
		cursor := p.Cursor
		for p.Scanned < patternScan && len(events) < streamWindow {
			var page list[eventJSON]
			if err := c.call(r, http.MethodGet, "/v1/events", url.Values{"limit": {"100"}, "cursor": nonEmpty(cursor)}, nil, &page); err != nil {
				p.Error = err.Message
				return p
			}
			p.Scanned += len(page.Data)
			for _, e := range page.Data {
				if triggers.MatchName(p.Query, e.Name) {
					events = append(events, e)
				}
			}
			cursor = page.Cursor
			if cursor == "" {
				break
			}
		}
		p.Next = cursor
	} else {
		query := url.Values{"limit": {strconv.Itoa(streamWindow)}, "cursor": nonEmpty(p.Cursor)}
		if p.Query != "" {
			query.Set("name", p.Query)
		}
		var page list[eventJSON]
		if err := c.call(r, http.MethodGet, "/v1/events", query, nil, &page); err != nil {
			p.Error = err.Message
			return p
		}
		events, p.Next = page.Data, page.Cursor
		p.Scanned = 0
	}
	p.Rows = make([]eventRow, len(events))
	for i, e := range events {
		p.Rows[i].Event = e
		var runs list[runJSON]
		if err := c.call(r, http.MethodGet, path("v1", "events", e.ID, "runs"), nil, nil, &runs); err != nil {
			p.Rows[i].RunsErr = err.Message
			continue
		}
		p.Rows[i].Runs = len(runs.Data)
		p.Rows[i].Outcomes = outcomes(runs.Data)
	}
	return p
}

// nonEmpty leaves an empty query value out.
func nonEmpty(v string) []string {
	if v == "" {
		return nil
	}
	return []string{v}
}

// handleGo opens the event with the id entered.
func (c *handler) handleGo(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimSpace(r.URL.Query().Get("id"))
	if id == "" {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/events/"+url.PathEscape(id), http.StatusSeeOther)
}

type eventPage struct {
	Event   eventJSON
	Pretty  string
	Runs    []runJSON
	RunsErr string
	// Live is set while the runs may still change: the page polls them.
	Live bool
}

// liveFor is how long after its arrival an event without runs is still
// watched for them.
const liveFor = 10 * time.Minute

func (c *handler) handleEvent(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var ev one[eventJSON]
	if err := c.call(r, http.MethodGet, path("v1", "events", id), nil, nil, &ev); err != nil {
		c.apiFailed(w, r, err, "/")
		return
	}
	p := eventPage{Event: ev.Data, Pretty: prettyJSON(ev.Data.Data)}
	var runs list[runJSON]
	if err := c.call(r, http.MethodGet, path("v1", "events", id, "runs"), nil, nil, &runs); err != nil {
		p.RunsErr = err.Message
	}
	p.Runs = runs.Data
	p.Live = len(p.Runs) == 0 && time.Since(p.Event.ReceivedAt) < liveFor
	for _, run := range p.Runs {
		if !wire.RunFinished(run.Status) {
			p.Live = true
		}
	}
	if r.URL.Query().Get("part") == "runs" {
		c.renderBlock(w, r, http.StatusOK, "event", "runrows", p)
		return
	}
	c.render(w, r, http.StatusOK, "event", p)
}

// handleSend sends the form's event through POST /v1/events. The page's
// script posts the form itself and swaps in the form it gets back, so the
// stream keeps running; without the script the whole page comes back.
func (c *handler) handleSend(w http.ResponseWriter, r *http.Request) {
	f := sendForm{Name: strings.TrimSpace(r.PostForm.Get("name")), Data: r.PostForm.Get("data"), ID: strings.TrimSpace(r.PostForm.Get("id")), Errors: map[string]string{}}
	status := http.StatusOK
	ev := map[string]any{"name": f.Name}
	data := strings.TrimSpace(f.Data)
	if data == "" {
		data = "{}"
	}
	if !json.Valid([]byte(data)) {
		f.Errors["data"] = "is not valid JSON"
	} else {
		ev["data"] = json.RawMessage(data)
	}
	if f.ID != "" {
		// /v1/events trusts workers with Herald's derived ids; the form
		// follows the rules of POST /e.
		if strings.HasPrefix(f.ID, wire.DerivedIDPrefix) {
			f.Errors["id"] = "must not start with " + strconv.Quote(wire.DerivedIDPrefix) + ": that prefix is reserved for the ids Herald derives for its own events"
		}
		ev["id"] = f.ID
	}
	if len(f.Errors) == 0 {
		var out struct {
			IDs []string `json:"ids"`
		}
		if err := c.call(r, http.MethodPost, "/v1/events", nil, ev, &out); err != nil {
			field, rule := fieldOf(err.Message)
			if field != "" {
				f.Errors[field] = rule
			} else {
				f.Error = err.Message
			}
		} else if len(out.IDs) > 0 {
			f.SentID = out.IDs[0]
			f = sendForm{Name: f.Name, Data: f.Data, SentID: f.SentID}
		}
	}
	if len(f.Errors) > 0 || f.Error != "" {
		status = http.StatusBadRequest
	}
	if r.Header.Get("X-Herald-Partial") == "send" {
		c.renderBlock(w, r, status, "events", "sendform", eventsPage{Send: f})
		return
	}
	p := c.loadEvents(r)
	p.Send = f
	c.loadFunctionSummaries(r, &p)
	c.render(w, r, status, "events", p)
}

// fieldOf splits the API's "event 0: <field>: <rule>" into the field and
// the rule; field is "" when the error is about no one field.
func fieldOf(msg string) (field, rule string) {
	rest, ok := strings.CutPrefix(msg, "event 0: ")
	if !ok {
		return "", msg
	}
	for _, f := range []string{"name", "data", "id", "ts", "v"} {
		if r, ok := strings.CutPrefix(rest, f+": "); ok {
			return f, r
		}
	}
	return "", rest
}

// apiFailed shows the API's refusal as a page.
func (c *handler) apiFailed(w http.ResponseWriter, r *http.Request, err *apiError, back string) {
	status := err.Status
	msg := err.Message
	if err.Missing {
		msg = "This Herald's API does not serve this yet: " + err.Message
	}
	c.render(w, r, status, "error", errorPage{Title: http.StatusText(status), Message: msg, Back: back})
}

type functionView struct {
	F           functionJSON
	Triggers    []triggerView
	FlowControl []string
	Recent      []outcome
	RecentN     int
	RecentErr   string
}

type functionsPage struct {
	Functions []functionView
	Error     string
	// ReplayFrom is the replay form's default start: an hour ago.
	ReplayFrom string
}

func (c *handler) handleFunctions(w http.ResponseWriter, r *http.Request) {
	var fns list[functionJSON]
	p := functionsPage{ReplayFrom: time.Now().UTC().Add(-time.Hour).Truncate(time.Second).Format(time.RFC3339)}
	if err := c.call(r, http.MethodGet, "/v1/functions", nil, nil, &fns); err != nil {
		p.Error = err.Message
	}
	now := time.Now()
	for _, f := range fns.Data {
		v := functionView{F: f, Triggers: describeTriggers(f.Triggers, now), FlowControl: flowControl(f)}
		var runs list[runJSON]
		if err := c.call(r, http.MethodGet, "/v1/runs", url.Values{"function_id": {f.ID}, "limit": {strconv.Itoa(pageSize)}}, nil, &runs); err != nil {
			if err.Missing {
				v.RecentErr = missing("GET /v1/runs")
			} else {
				v.RecentErr = err.Message
			}
		} else {
			v.Recent, v.RecentN = outcomes(runs.Data), len(runs.Data)
		}
		p.Functions = append(p.Functions, v)
	}
	c.render(w, r, http.StatusOK, "functions", p)
}

func functionKey(r *http.Request) (app, fn string) { return r.PathValue("app"), r.PathValue("fn") }

func (c *handler) handleInvoke(w http.ResponseWriter, r *http.Request) {
	app, fn := functionKey(r)
	data := strings.TrimSpace(r.PostForm.Get("data"))
	if data == "" {
		data = "{}"
	}
	if !json.Valid([]byte(data)) {
		c.render(w, r, http.StatusBadRequest, "error", errorPage{Title: "Not invoked", Message: "data: is not valid JSON", Back: "/functions"})
		return
	}
	var out struct {
		IDs   []string `json:"ids"`
		RunID string   `json:"run_id"`
	}
	if err := c.call(r, http.MethodPost, path("v1", "invoke", app, fn), nil, map[string]any{"data": json.RawMessage(data)}, &out); err != nil {
		c.apiFailed(w, r, err, "/functions")
		return
	}
	if len(out.IDs) == 0 {
		http.Redirect(w, r, "/functions", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/events/"+url.PathEscape(out.IDs[0]), http.StatusSeeOther)
}

func (c *handler) handlePause(w http.ResponseWriter, r *http.Request) {
	app, fn := functionKey(r)
	body := map[string]any{"cancel_running": r.PostForm.Get("cancel_running") == "on"}
	if err := c.call(r, http.MethodPost, path("v1", "functions", app, fn, "pause"), nil, body, nil); err != nil {
		c.apiFailed(w, r, err, "/functions")
		return
	}
	http.Redirect(w, r, "/functions#"+url.PathEscape(app+"/"+fn), http.StatusSeeOther)
}

func (c *handler) handleResume(w http.ResponseWriter, r *http.Request) {
	app, fn := functionKey(r)
	if err := c.call(r, http.MethodPost, path("v1", "functions", app, fn, "resume"), nil, nil, nil); err != nil {
		c.apiFailed(w, r, err, "/functions")
		return
	}
	http.Redirect(w, r, "/functions#"+url.PathEscape(app+"/"+fn), http.StatusSeeOther)
}

func (c *handler) handleReplay(w http.ResponseWriter, r *http.Request) {
	app, fn := functionKey(r)
	f := r.PostForm
	body := map[string]any{"function_id": app + "/" + fn, "events": f.Get("events") == "on"}
	for _, k := range []string{"from", "to", "if"} {
		if v := strings.TrimSpace(f.Get(k)); v != "" {
			body[k] = v
		}
	}
	if st := f["statuses"]; len(st) > 0 {
		body["statuses"] = st
	}
	var out struct {
		ID string `json:"id"`
	}
	if err := c.call(r, http.MethodPost, "/v1/replays", nil, body, &out); err != nil {
		c.apiFailed(w, r, err, "/functions")
		return
	}
	http.Redirect(w, r, "/replays/"+url.PathEscape(out.ID), http.StatusSeeOther)
}

func (c *handler) handleReplayPage(w http.ResponseWriter, r *http.Request) {
	var out one[replayJSON]
	if err := c.call(r, http.MethodGet, path("v1", "replays", r.PathValue("id")), nil, nil, &out); err != nil {
		c.apiFailed(w, r, err, "/functions")
		return
	}
	c.render(w, r, http.StatusOK, "replay", out.Data)
}

type runsPage struct {
	Function, Status string
	Statuses         []string
	Functions        []string
	Runs             []runJSON
	Cursor, Next     string
	Error            string
}

var runStatuses = []string{wire.RunScheduled, wire.RunRunning, wire.RunCompleted, wire.RunFailed, wire.RunCancelled, wire.RunSkipped}

func (c *handler) handleRuns(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p := runsPage{Function: q.Get("function_id"), Status: q.Get("status"), Cursor: q.Get("cursor"), Statuses: runStatuses}
	p.Functions = c.functionIDs(r)
	query := url.Values{"limit": {strconv.Itoa(pageSize)}, "cursor": nonEmpty(p.Cursor), "function_id": nonEmpty(p.Function), "status": nonEmpty(p.Status)}
	var runs list[runJSON]
	if err := c.call(r, http.MethodGet, "/v1/runs", query, nil, &runs); err != nil {
		if err.Missing {
			p.Error = missing("GET /v1/runs")
		} else {
			p.Error = err.Message
		}
	}
	p.Runs, p.Next = runs.Data, runs.Cursor
	c.render(w, r, http.StatusOK, "runs", p)
}

func (c *handler) handleRun(w http.ResponseWriter, r *http.Request) {
	var out one[runJSON]
	if err := c.call(r, http.MethodGet, path("v1", "runs", r.PathValue("id")), nil, nil, &out); err != nil {
		c.apiFailed(w, r, err, "/runs")
		return
	}
	p := struct {
		Run      runJSON
		Finished bool
	}{out.Data, wire.RunFinished(out.Data.Status)}
	if r.URL.Query().Get("part") == "body" {
		c.renderBlock(w, r, http.StatusOK, "run", "runbody", p)
		return
	}
	c.render(w, r, http.StatusOK, "run", p)
}

func (c *handler) handleCancel(w http.ResponseWriter, r *http.Request) {
	id := r.PostForm.Get("run_id")
	if err := c.call(r, http.MethodDelete, path("v1", "runs", id), nil, nil, nil); err != nil {
		c.apiFailed(w, r, err, "/runs/"+url.PathEscape(id))
		return
	}
	http.Redirect(w, r, "/runs/"+url.PathEscape(id), http.StatusSeeOther)
}

func (c *handler) handleRerun(w http.ResponseWriter, r *http.Request) {
	id := r.PostForm.Get("run_id")
	body := map[string]any{}
	if s := strings.TrimSpace(r.PostForm.Get("from_step")); s != "" {
		body["from_step"] = s
	}
	var out one[runJSON]
	if err := c.call(r, http.MethodPost, path("v1", "runs", id, "rerun"), nil, body, &out); err != nil {
		c.apiFailed(w, r, err, "/runs/"+url.PathEscape(id))
		return
	}
	next := out.Data.RunID
	if next == "" {
		next = id
	}
	http.Redirect(w, r, "/runs/"+url.PathEscape(next), http.StatusSeeOther)
}

type waitsPage struct {
	Function     string
	Functions    []string
	Waits        []waitJSON
	Cursor, Next string
	Error        string
}

func (c *handler) handleWaits(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p := waitsPage{Function: q.Get("function_id"), Cursor: q.Get("cursor"), Functions: c.functionIDs(r)}
	var out list[waitJSON]
	query := url.Values{"limit": {strconv.Itoa(pageSize)}, "cursor": nonEmpty(p.Cursor), "function_id": nonEmpty(p.Function)}
	if err := c.call(r, http.MethodGet, "/v1/waits", query, nil, &out); err != nil {
		if err.Missing {
			p.Error = missing("GET /v1/waits")
		} else {
			p.Error = err.Message
		}
	}
	p.Waits, p.Next = out.Data, out.Cursor
	c.render(w, r, http.StatusOK, "waits", p)
}

func (c *handler) handleWebhooks(w http.ResponseWriter, r *http.Request) {
	var out list[webhookJSON]
	p := struct {
		Webhooks []webhookJSON
		Error    string
	}{}
	if err := c.call(r, http.MethodGet, "/v1/webhooks", nil, nil, &out); err != nil {
		p.Error = err.Message
	}
	p.Webhooks = out.Data
	c.render(w, r, http.StatusOK, "webhooks", p)
}

// functionIDs lists the synced functions' ids for a filter, none when the
// API cannot say.
func (c *handler) functionIDs(r *http.Request) []string {
	var fns list[functionJSON]
	if err := c.call(r, http.MethodGet, "/v1/functions", nil, nil, &fns); err != nil {
		return nil
	}
	ids := make([]string, len(fns.Data))
	for i, f := range fns.Data {
		ids[i] = f.ID
	}
	return ids
}
