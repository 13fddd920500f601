package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/herald-run/herald/internal/wire"
	"github.com/herald-run/herald/triggers"
)

// pageNames are the templates/<name>.html files, each rendered inside
// layout.html.
var pageNames = []string{"events", "event", "functions", "runs", "run", "waits", "webhooks", "replay", "login", "error"}

func parsePages() (map[string]*template.Template, error) {
	pages := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// view is what every page template gets.
type view struct {
	Page string
	// CSRF is the token the page's forms carry.
	CSRF string
	// Login is set when the console has a login (a signing key).
	Login bool
	// PollMS is the events stream's poll interval.
	PollMS int64
	// TemporalUI and Namespace build the links to runs' workflows.
	TemporalUI, Namespace string
	Data                  any
}

type errorPage struct {
	Title   string
	Message string
	Back    string
}

// render executes the page's layout (or, with block set, one of its blocks
// alone, for the stream's polling) with data.
func (c *handler) render(w http.ResponseWriter, r *http.Request, status int, page string, data any) {
	c.renderBlock(w, r, status, page, "layout", data)
}

func (c *handler) renderBlock(w http.ResponseWriter, r *http.Request, status int, page, block string, data any) {
	session, _ := c.session(r)
	v := view{Page: page, CSRF: c.csrfToken(session), Login: c.cfg.SigningKey != "", PollMS: c.cfg.PollInterval.Milliseconds(),
		TemporalUI: c.cfg.TemporalUIURL, Namespace: c.cfg.TemporalNamespace, Data: data}
	var buf bytes.Buffer
	if err := c.pages[page].ExecuteTemplate(&buf, block, v); err != nil {
		c.log.Error("console: rendering failed", "page", page, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

var funcs = template.FuncMap{
	"eventURL": func(id string) string { return "/events/" + url.PathEscape(id) },
	"runURL":   func(id string) string { return "/runs/" + url.PathEscape(id) },
	"fnPath":   func(app, fn string) string { return "/functions/" + url.PathEscape(app) + "/" + url.PathEscape(fn) },
	"workflowURL": func(ui, ns, workflowID string) string {
		if ui == "" || workflowID == "" {
			return ""
		}
		return ui + "/namespaces/" + url.PathEscape(ns) + "/workflows/" + url.PathEscape(workflowID)
	},
	// query builds a query string from name, value pairs, leaving empty
	// values out. Its output is fully percent-encoded, so it is marked as a
	// URL part the template must not encode again.
	"query": func(pairs ...string) template.URL {
		q := url.Values{}
		for i := 0; i+1 < len(pairs); i += 2 {
			if pairs[i+1] != "" {
				q.Set(pairs[i], pairs[i+1])
			}
		}
		return template.URL(q.Encode())
	},
	"time":     fmtTime,
	"timePtr":  func(t *time.Time) string { return fmtTimePtr(t) },
	"duration": runDuration,
	"pretty":   prettyJSON,
	"statusClass": func(s string) string {
		return "status-" + strings.ToLower(s)
	},
	"ms": func(ms int64) string { return (time.Duration(ms) * time.Millisecond).String() },
	// skipReason is a skipped run's reason without the "skipped: " the
	// router starts it with: the page already says Skipped.
	"skipReason": func(reason string) string {
		if len(reason) > 9 && strings.EqualFold(reason[:9], "skipped: ") {
			return reason[9:]
		}
		return reason
	},
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05.000Z")
}

func fmtTimePtr(t *time.Time) string {
	if t == nil {
		return ""
	}
	return fmtTime(*t)
}

// runDuration is how long a run took, or has been running.
func runDuration(r runJSON) string {
	if r.StartedAt.IsZero() {
		return ""
	}
	end := time.Now()
	if r.EndedAt != nil {
		end = *r.EndedAt
	} else if wire.RunFinished(r.Status) {
		return ""
	}
	d := end.Sub(r.StartedAt)
	if d < 0 {
		return ""
	}
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// prettyJSON indents a JSON value for reading, with the <, > and & that
// the API's encoder escapes shown as themselves: the page shows the value
// as text (html/template escapes it there), as it was sent.
func prettyJSON(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		return string(raw)
	}
	return unescapeHTML(out.String())
}

// unescapeHTML turns the JSON escapes \u003c, \u003e and \u0026 back into
// <, > and &, leaving every other escape (an escaped backslash included) as
// it is.
func unescapeHTML(s string) string {
	if !strings.Contains(s, `\u00`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		if s[i+1] == 'u' && i+6 <= len(s) {
			switch strings.ToLower(s[i+2 : i+6]) {
			case "003c":
				b.WriteByte('<')
				i += 5
				continue
			case "003e":
				b.WriteByte('>')
				i += 5
				continue
			case "0026":
				b.WriteByte('&')
				i += 5
				continue
			}
		}
		// Any other escape: copy it whole, so its second byte is never
		// read as the start of another.
		b.WriteString(s[i : i+2])
		i++
	}
	return b.String()
}

// outcome counts an event's runs by status, in a fixed order.
type outcome struct {
	Status string
	Count  int
}

func outcomes(runs []runJSON) []outcome {
	counts := map[string]int{}
	for _, r := range runs {
		counts[r.Status]++
	}
	order := []string{wire.RunScheduled, wire.RunRunning, wire.RunCompleted, wire.RunFailed, wire.RunCancelled, wire.RunSkipped}
	var out []outcome
	for _, s := range order {
		if counts[s] > 0 {
			out = append(out, outcome{s, counts[s]})
			delete(counts, s)
		}
	}
	rest := make([]string, 0, len(counts))
	for s := range counts {
		rest = append(rest, s)
	}
	sort.Strings(rest)
	for _, s := range rest {
		out = append(out, outcome{s, counts[s]})
	}
	return out
}

// triggerView is a trigger in words, with a cron's next times.
type triggerView struct {
	Text string
	If   string
	Next []string
	Err  string
}

func describeTriggers(ts []wire.TriggerConfig, now time.Time) []triggerView {
	out := make([]triggerView, 0, len(ts))
	for _, t := range ts {
		switch {
		case t.Cron != "":
			v := triggerView{Text: "on the schedule " + t.Cron}
			spec, err := triggers.ParseCron(t.Cron)
			if err != nil {
				v.Err = err.Error()
			} else {
				at := now
				for range 3 {
					at = spec.Next(at)
					if at.IsZero() {
						break
					}
					v.Next = append(v.Next, fmtTime(at))
				}
			}
			out = append(out, v)
		case strings.HasSuffix(t.Event, "*"):
			out = append(out, triggerView{Text: "on every event named " + t.Event, If: t.If})
		default:
			out = append(out, triggerView{Text: "on the event " + t.Event, If: t.If})
		}
	}
	return out
}

func keyWords(key string) string {
	if key == "" {
		return ""
	}
	return " per value of " + key
}

func period(ms int64) string { return (time.Duration(ms) * time.Millisecond).String() }

// flowControl says a function's flow-control settings in plain words.
func flowControl(f functionJSON) []string {
	if f.Config != nil {
		c := f.Config
		f.CancelOn, f.Concurrency, f.Throttle, f.RateLimit = c.CancelOn, c.Concurrency, c.Throttle, c.RateLimit
		f.Debounce, f.Batch, f.Priority, f.Singleton, f.Idempotency, f.Timeouts = c.Debounce, c.Batch, c.Priority, c.Singleton, c.Idempotency, c.Timeouts
		if f.Retries == 0 {
			f.Retries = c.Retries
		}
	}
	var out []string
	for _, c := range f.Concurrency {
		scope := ""
		if c.Scope == wire.ScopeEnv {
			scope = ", shared with every function using the same key"
		}
		out = append(out, fmt.Sprintf("At most %d steps run at once%s%s.", c.Limit, keyWords(c.Key), scope))
	}
	if t := f.Throttle; t != nil {
		burst := ""
		if t.Burst > 0 {
			burst = fmt.Sprintf(" (bursts of %d)", t.Burst)
		}
		out = append(out, fmt.Sprintf("Throttled: at most %d runs start every %s%s%s; more wait their turn.", t.Limit, period(t.PeriodMS), burst, keyWords(t.Key)))
	}
	if l := f.RateLimit; l != nil {
		out = append(out, fmt.Sprintf("Rate limited: at most %d runs every %s%s; more are skipped.", l.Limit, period(l.PeriodMS), keyWords(l.Key)))
	}
	if d := f.Debounce; d != nil {
		s := fmt.Sprintf("Debounced: runs %s after the last event%s", period(d.PeriodMS), keyWords(d.Key))
		if d.TimeoutMS > 0 {
			s += fmt.Sprintf(", at most %s after the first", period(d.TimeoutMS))
		}
		out = append(out, s+".")
	}
	if b := f.Batch; b != nil {
		s := fmt.Sprintf("Batched: one run for up to %d events or after %s%s", b.MaxSize, period(b.TimeoutMS), keyWords(b.Key))
		if b.If != "" {
			s += "; only events where " + b.If
		}
		out = append(out, s+".")
	}
	if p := f.Priority; p != nil {
		out = append(out, "Priority: "+p.Run+" (higher runs sooner).")
	}
	if s := f.Singleton; s != nil {
		mode := "a new event is skipped while one runs"
		if s.Mode == wire.SingletonCancel {
			mode = "a new event cancels the running one and starts"
		}
		out = append(out, fmt.Sprintf("Singleton%s: %s.", keyWords(s.Key), mode))
	}
	if f.Idempotency != "" {
		out = append(out, "Idempotent: at most one run per value of "+f.Idempotency+" every 24 hours.")
	}
	if t := f.Timeouts; t != nil {
		if t.StartMS > 0 {
			out = append(out, "A run that has not started within "+period(t.StartMS)+" is cancelled.")
		}
		if t.FinishMS > 0 {
			out = append(out, "A run must finish within "+period(t.FinishMS)+".")
		}
	}
	for _, c := range f.CancelOn {
		s := "Cancelled by the event " + c.Event
		if c.Match != "" {
			s += " with the same " + c.Match
		}
		if c.If != "" {
			s += " where " + c.If
		}
		if c.TimeoutMS > 0 {
			s += " within " + period(c.TimeoutMS)
		}
		out = append(out, s+".")
	}
	if f.Retries > 0 {
		out = append(out, fmt.Sprintf("Steps are retried up to %d times.", f.Retries))
	}
	return out
}
