package prodtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// API is a client of Herald's HTTP API as users call it: events with the
// event key, the REST API with the signing key.
type API struct {
	Base string
	hc   *http.Client
}

// NewAPI returns a client of the Herald at base.
func NewAPI(base string) *API {
	return &API{Base: base, hc: &http.Client{Timeout: 10 * time.Second}}
}

// Run is one run as GET /v1/events/{id}/runs lists it.
type Run struct {
	RunID      string          `json:"run_id"`
	FunctionID string          `json:"function_id"`
	WorkflowID string          `json:"workflow_id"`
	Status     string          `json:"status"`
	Output     json.RawMessage `json:"output"`
	Error      string          `json:"error"`
}

// Do sends a request with the signing key and decodes a JSON answer into
// out (when not nil). A status other than want is an error.
func (a *API) Do(method, path string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, a.Base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+SigningKey)
	req.Header.Set("Content-Type", "application/json")
	return a.send(req, want, out)
}

func (a *API) send(req *http.Request, want int, out any) error {
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: status %d: %s", req.Method, req.URL.Path, resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: %v: %s", req.Method, req.URL.Path, err, raw)
		}
	}
	return nil
}

// Send posts events to POST /e/{key} and returns their ids.
func (a *API) Send(events ...map[string]any) ([]string, error) {
	raw, err := json.Marshal(events)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(http.MethodPost, a.Base+"/e/"+EventKey, bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	var out struct {
		IDs []string `json:"ids"`
	}
	if err := a.send(req, http.StatusOK, &out); err != nil {
		return nil, err
	}
	return out.IDs, nil
}

// Runs lists the runs of an event.
func (a *API) Runs(eventID string) ([]Run, error) {
	var out struct {
		Data []Run `json:"data"`
	}
	err := a.Do(http.MethodGet, "/v1/events/"+eventID+"/runs", nil, http.StatusOK, &out)
	return out.Data, err
}

// Functions lists the ids of the synced functions.
func (a *API) Functions() ([]string, error) {
	var out struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := a.Do(http.MethodGet, "/v1/functions", nil, http.StatusOK, &out); err != nil {
		return nil, err
	}
	ids := make([]string, len(out.Data))
	for i, f := range out.Data {
		ids[i] = f.ID
	}
	return ids, nil
}
