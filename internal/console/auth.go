package console

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// sessionCookie names the cookie that holds a console session.
const sessionCookie = "herald_session"

// maxFormBytes bounds an action's form: an event's data fits (the API
// applies its own, smaller limits to what it stores).
const maxFormBytes = 2 << 20

func (c *handler) mac(parts ...string) []byte {
	m := hmac.New(sha256.New, c.secret)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return m.Sum(nil)
}

// newSession returns a session token valid until expires: the expiry and an
// HMAC of it under a key derived from the signing key. It reveals nothing of
// the key and cannot be forged without it.
func (c *handler) newSession(expires time.Time) string {
	exp := strconv.FormatInt(expires.Unix(), 10)
	return exp + "." + base64.RawURLEncoding.EncodeToString(c.mac("session", exp))
}

// validSession reports whether token is a session this console issued that
// has not expired.
func (c *handler) validSession(token string, now time.Time) bool {
	exp, sig, ok := strings.Cut(token, ".")
	if !ok {
		return false
	}
	unix, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || now.Unix() >= unix {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return false
	}
	return hmac.Equal(got, c.mac("session", exp))
}

// session returns the request's valid session token, "" with ok true when
// no login is needed (no signing key), and ok false when a login is needed.
func (c *handler) session(r *http.Request) (token string, ok bool) {
	if c.cfg.SigningKey == "" {
		return "", true
	}
	ck, err := r.Cookie(sessionCookie)
	if err != nil || !c.validSession(ck.Value, time.Now()) {
		return "", false
	}
	return ck.Value, true
}

// csrfToken is the token every form of a session carries: bound to the
// session, so a token seen by one login is useless to another.
func (c *handler) csrfToken(session string) string {
	return base64.RawURLEncoding.EncodeToString(c.mac("csrf", session))
}

// page requires a session (redirecting to the login otherwise) before h.
func (c *handler) page(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := c.session(r); !ok {
			c.toLogin(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		h(w, r)
	})
}

// action requires a session and a valid CSRF token before h, and refuses
// POSTs from other origins.
func (c *handler) action(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		session, ok := c.session(r)
		if !ok {
			c.toLogin(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		if !sameOrigin(r) {
			c.render(w, r, http.StatusForbidden, "error", errorPage{Title: "Refused", Message: "This action came from another site and was refused."})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			c.render(w, r, http.StatusBadRequest, "error", errorPage{Title: "Bad request", Message: "The form could not be read: " + err.Error()})
			return
		}
		want := c.csrfToken(session)
		if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(want)) != 1 {
			c.render(w, r, http.StatusForbidden, "error", errorPage{Title: "Refused", Message: "The form's security token is missing or stale: reload the page and try again."})
			return
		}
		h(w, r)
	})
}

// sameOrigin reports whether a POST's Origin header, when the browser sent
// one, names this host.
func sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

// toLogin redirects to the login page, remembering where the user was going
// when that was a page.
func (c *handler) toLogin(w http.ResponseWriter, r *http.Request) {
	target := "/login"
	if r.Method == http.MethodGet && r.URL.Path != "/stream" {
		target += "?next=" + url.QueryEscape(r.URL.RequestURI())
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// safeNext keeps a post-login redirect on this console.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}

type loginPage struct {
	Next  string
	Error string
}

func (c *handler) handleLoginPage(w http.ResponseWriter, r *http.Request) {
	if c.cfg.SigningKey == "" {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	c.render(w, r, http.StatusOK, "login", loginPage{Next: safeNext(r.URL.Query().Get("next"))})
}

func (c *handler) handleLogin(w http.ResponseWriter, r *http.Request) {
	if c.cfg.SigningKey == "" {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil || !sameOrigin(r) {
		c.render(w, r, http.StatusBadRequest, "login", loginPage{Next: "/", Error: "The login form could not be read."})
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	got := sha256.Sum256([]byte(strings.TrimSpace(r.PostForm.Get("key"))))
	want := sha256.Sum256([]byte(c.cfg.SigningKey))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		c.log.Warn("console login refused", "remote", r.RemoteAddr)
		c.render(w, r, http.StatusUnauthorized, "login", loginPage{Next: next, Error: "That is not this Herald's signing key."})
		return
	}
	expires := time.Now().Add(c.cfg.SessionTTL)
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: c.newSession(expires), Path: "/", Expires: expires,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: overTLS(r),
	})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *handler) handleLogout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: overTLS(r)})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// overTLS reports whether the browser reached Herald over TLS, directly or
// through a proxy that says so.
func overTLS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}
