package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// apiError is an answer of the API other than 2xx.
type apiError struct {
	Status int
	// Message is the API's error text.
	Message string
	// Missing is set when this Herald's API has no such route yet.
	Missing bool
}

func (e *apiError) Error() string { return fmt.Sprintf("%d: %s", e.Status, e.Message) }

// recorder is the ResponseWriter of an in-process API request.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}
func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(p)
}

// path joins escaped segments into an API path: ids may hold "/".
func path(segments ...string) string {
	var b strings.Builder
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

// call makes an in-process request to the API on behalf of the browser's
// request r, with the signing key, and decodes a 2xx answer's JSON into out
// (when not nil). The console sees exactly what a /v1 client would.
func (c *handler) call(r *http.Request, method, apiPath string, query url.Values, body any, out any) *apiError {
	var rd io.Reader = http.NoBody
	if body != nil {
		raw, ok := body.([]byte)
		if !ok {
			var err error
			if raw, err = json.Marshal(body); err != nil {
				return &apiError{Status: http.StatusBadRequest, Message: err.Error()}
			}
		}
		rd = bytes.NewReader(raw)
	}
	u, err := url.Parse(apiPath)
	if err != nil {
		return &apiError{Status: http.StatusBadRequest, Message: err.Error()}
	}
	if len(query) > 0 {
		u.RawQuery = query.Encode()
	}
	req, err := http.NewRequestWithContext(r.Context(), method, u.String(), rd)
	if err != nil {
		return &apiError{Status: http.StatusBadRequest, Message: err.Error()}
	}
	// The API builds webhook URLs from the request's scheme and host.
	req.Host, req.TLS, req.RemoteAddr = r.Host, r.TLS, r.RemoteAddr
	if p := r.Header.Get("X-Forwarded-Proto"); p != "" {
		req.Header.Set("X-Forwarded-Proto", p)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.cfg.SigningKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.SigningKey)
	}
	rec := &recorder{header: http.Header{}}
	c.cfg.API.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if rec.status < 200 || rec.status > 299 {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(rec.body.Bytes(), &e)
		if e.Error == "" {
			e.Error = http.StatusText(rec.status)
		}
		missing := (rec.status == http.StatusNotFound && strings.HasPrefix(e.Error, "no route for")) ||
			rec.status == http.StatusMethodNotAllowed
		return &apiError{Status: rec.status, Message: e.Error, Missing: missing}
	}
	if out != nil {
		if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
			return &apiError{Status: http.StatusBadGateway, Message: "the API's answer could not be read: " + err.Error()}
		}
	}
	return nil
}

// page is the shape of the API's list answers.
type list[T any] struct {
	Data   []T    `json:"data"`
	Cursor string `json:"cursor"`
}

// one is the shape of the API's single-item answers.
type one[T any] struct {
	Data T `json:"data"`
}
