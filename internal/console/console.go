// Package console is Herald's web console: server-rendered pages that show
// the event stream, an event's runs with links to the Temporal UI, functions,
// runs, pending waits and webhook sources, and that act on them (send an
// event, invoke, cancel, pause and resume, rerun, replay).
//
// The console owns no queries. Every page makes in-process requests to
// Herald's REST API handler, with the signing key, and renders the JSON, so
// it reads through the same store code and is checked by the same rules as
// /v1. Pages and assets are embedded; nothing is built with Node.
//
// Security: with a signing key set (herald serve) every page and action
// needs a session, which the login form grants for the key; the session
// cookie is an HMAC token derived from the key, never the key. Every POST
// carries a CSRF token bound to the session. Responses carry a strict
// Content-Security-Policy (scripts only from the console's own files) and
// refuse framing; all output goes through html/template.
package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config configures the console.
type Config struct {
	// API is Herald's HTTP API (ingest.Server.Handler). Required. The
	// console calls it in-process for every page and action.
	API http.Handler
	// SigningKey, when set, is the key the login form asks for and the key
	// the console sends to the API. Empty (herald dev) means no login.
	SigningKey string
	// TemporalUIURL is the Temporal Web UI's base URL, such as
	// http://127.0.0.1:8233. Empty means runs are shown without links.
	TemporalUIURL string
	// TemporalNamespace is the namespace in the links. Default "default".
	TemporalNamespace string
	// PollInterval is how often the events stream asks for new events.
	// Default 2s.
	PollInterval time.Duration
	// SessionTTL is how long a login lasts. Default 12h.
	SessionTTL time.Duration
	// Logger defaults to discard.
	Logger *slog.Logger
}

// handler serves the console's pages. Build it with New.
type handler struct {
	cfg   Config
	mux   *http.ServeMux
	pages map[string]*template.Template
	// secret keys the session and CSRF HMACs: derived from the signing key,
	// so every replica sharing the key accepts the same sessions; random per
	// process without one.
	secret []byte
	log    *slog.Logger
}

// New validates cfg and builds the console's handler.
func New(cfg Config) (http.Handler, error) {
	c, err := newConsole(cfg)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func newConsole(cfg Config) (*handler, error) {
	if cfg.API == nil {
		return nil, errors.New("console: Config.API is required")
	}
	if cfg.TemporalUIURL != "" {
		u, err := url.Parse(cfg.TemporalUIURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("console: the Temporal UI URL %q must be an absolute http or https URL", cfg.TemporalUIURL)
		}
		cfg.TemporalUIURL = strings.TrimRight(cfg.TemporalUIURL, "/")
	}
	if cfg.TemporalNamespace == "" {
		cfg.TemporalNamespace = "default"
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 2 * time.Second
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &handler{cfg: cfg, log: cfg.Logger}
	if cfg.SigningKey != "" {
		m := hmac.New(sha256.New, []byte(cfg.SigningKey))
		m.Write([]byte("herald console session v1"))
		c.secret = m.Sum(nil)
	} else {
		c.secret = make([]byte, 32)
		if _, err := rand.Read(c.secret); err != nil {
			return nil, err
		}
	}
	var err error
	if c.pages, err = parsePages(); err != nil {
		return nil, err
	}
	c.routes()
	return c, nil
}

func (c *handler) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /login", c.handleLoginPage)
	m.HandleFunc("POST /login", c.handleLogin)
	m.Handle("POST /logout", c.action(c.handleLogout))

	m.Handle("GET /{$}", c.page(c.handleEvents))
	m.Handle("GET /stream", c.page(c.handleStream))
	m.Handle("GET /go", c.page(c.handleGo))
	m.Handle("GET /events/{id...}", c.page(c.handleEvent))
	m.Handle("POST /send", c.action(c.handleSend))
	m.Handle("GET /functions", c.page(c.handleFunctions))
	m.Handle("POST /functions/{app}/{fn}/invoke", c.action(c.handleInvoke))
	m.Handle("POST /functions/{app}/{fn}/pause", c.action(c.handlePause))
	m.Handle("POST /functions/{app}/{fn}/resume", c.action(c.handleResume))
	m.Handle("POST /functions/{app}/{fn}/replay", c.action(c.handleReplay))
	m.Handle("GET /runs", c.page(c.handleRuns))
	m.Handle("GET /runs/{id...}", c.page(c.handleRun))
	m.Handle("POST /cancel", c.action(c.handleCancel))
	m.Handle("POST /rerun", c.action(c.handleRerun))
	m.Handle("GET /replays/{id...}", c.page(c.handleReplayPage))
	m.Handle("GET /waits", c.page(c.handleWaits))
	m.Handle("GET /webhooks", c.page(c.handleWebhooks))
	m.Handle("/", c.page(func(w http.ResponseWriter, r *http.Request) {
		c.render(w, r, http.StatusNotFound, "error", errorPage{Title: "Not found", Message: "There is no console page at " + r.URL.Path + "."})
	}))
	c.mux = m
}

// ServeHTTP sets the security headers on every response and serves the page.
func (c *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	c.mux.ServeHTTP(w, r)
}

// apiPrefixes are the paths Route sends to the API.
var apiPrefixes = []string{"/v1/", "/e/", "/w/", "/debug/"}

// apiPaths are the exact paths Route sends to the API.
var apiPaths = []string{"/v1", "/healthz", "/readyz", "/metrics"}

// Route serves Herald's API paths (/v1/, /e/, /w/, /healthz, /readyz,
// /metrics, /debug/) with api and every other path with console.
func Route(api, console http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		for _, prefix := range apiPrefixes {
			if strings.HasPrefix(p, prefix) {
				api.ServeHTTP(w, r)
				return
			}
		}
		for _, exact := range apiPaths {
			if p == exact {
				api.ServeHTTP(w, r)
				return
			}
		}
		console.ServeHTTP(w, r)
	})
}
