// Package faultload is the load of Herald's fault tests: a client that POSTs
// events with ids of its own to one or more Herald replicas while a test
// breaks something, retries what failed once, and keeps a ledger of what was
// sent and what was acknowledged, for the tests' accounting (sent, acked,
// stored, runs, duplicates, lost).
package faultload

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Request is one POST /e/{key} the sender made.
type Request struct {
	Start   time.Time
	Latency time.Duration
	Target  string
	IDs     []string
	Status  int // 0: no HTTP answer (connection refused or reset, timeout)
	Err     string
	Retry   bool // a second attempt of a failed request, with the same ids
}

// Options configures the load.
type Options struct {
	// Targets are Herald base URLs, used in turn.
	Targets []string
	// Failover stops using a target once a request to it gets no HTTP
	// answer, as long as another target is left: what a load balancer's
	// health check does.
	Failover bool
	EventKey string        // the key of POST /e/{key}
	Event    string        // event name
	Prefix   string        // event id prefix
	Interval time.Duration // between requests
	Timeout  time.Duration // of one request; default 5s
	Inflight int           // requests in flight at most; default 8
}

// Sender POSTs events with client-chosen ids, one to three per request, every
// interval, and records which ids were acknowledged. A request that fails is
// sent once more, with the same ids, a little later: Herald deduplicates ids,
// so the retry may acknowledge events the first attempt stored unannounced.
type Sender struct {
	o    Options
	hc   *http.Client
	slot chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup // the ticker and the requests

	mu      sync.Mutex
	dead    map[string]bool
	next    int
	seq     int
	retries [][]string
	sent    map[string]bool
	acked   map[string]bool
	reqs    []Request
}

// Start starts the load.
func Start(o Options) *Sender {
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Inflight == 0 {
		o.Inflight = 8
	}
	s := &Sender{
		o: o,
		hc: &http.Client{Timeout: o.Timeout, Transport: &http.Transport{
			MaxIdleConnsPerHost: o.Inflight,
			// Fail fast on a dead server rather than wait out the timeout.
			ResponseHeaderTimeout: o.Timeout,
		}},
		slot:  make(chan struct{}, o.Inflight),
		stop:  make(chan struct{}),
		dead:  map[string]bool{},
		sent:  map[string]bool{},
		acked: map[string]bool{},
	}
	s.wg.Add(1)
	go s.loop()
	return s
}

func (s *Sender) loop() {
	defer s.wg.Done()
	tick := time.NewTicker(s.o.Interval)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		select {
		case s.slot <- struct{}{}:
		default:
			continue // as many requests in flight as allowed: skip this tick
		}
		ids, retry := s.nextIDs()
		target := s.pickTarget()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.slot }()
			_ = s.post(target, ids, retry)
		}()
	}
}

// nextIDs returns the ids of the next request: a failed request's, once, or
// one to three new ones.
func (s *Sender) nextIDs() ([]string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.retries) > 0 {
		ids := s.retries[0]
		s.retries = s.retries[1:]
		return ids, true
	}
	n := s.seq%3 + 1
	ids := make([]string, n)
	for i := range ids {
		s.seq++
		ids[i] = fmt.Sprintf("%s-%06d", s.o.Prefix, s.seq)
	}
	return ids, false
}

func (s *Sender) pickTarget() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range s.o.Targets {
		t := s.o.Targets[s.next%len(s.o.Targets)]
		s.next++
		if !s.dead[t] {
			return t
		}
	}
	return s.o.Targets[s.next%len(s.o.Targets)]
}

// post sends one request and records its outcome.
func (s *Sender) post(target string, ids []string, retry bool) Request {
	events := make([]map[string]any, len(ids))
	for i, id := range ids {
		events[i] = map[string]any{"name": s.o.Event, "id": id, "data": map[string]any{"i": i}}
	}
	body, _ := json.Marshal(events)
	s.mu.Lock()
	for _, id := range ids {
		s.sent[id] = true
	}
	s.mu.Unlock()

	r := Request{Start: time.Now(), Target: target, IDs: ids, Retry: retry}
	resp, err := s.hc.Post(target+"/e/"+s.o.EventKey, "application/json", bytes.NewReader(body))
	var raw []byte
	if err == nil {
		raw, err = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		r.Status = resp.StatusCode
	}
	r.Latency = time.Since(r.Start)
	if err != nil {
		r.Status, r.Err = 0, err.Error()
	}
	acked := false
	if r.Status == http.StatusOK {
		var out struct {
			IDs []string `json:"ids"`
		}
		if jerr := json.Unmarshal(raw, &out); jerr != nil || !slices.Equal(out.IDs, ids) {
			r.Err = fmt.Sprintf("200 with unexpected ids: %s", raw)
		} else {
			acked = true
		}
	} else if r.Status != 0 {
		r.Err = string(raw)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, r)
	if acked {
		for _, id := range ids {
			s.acked[id] = true
		}
		return r
	}
	if r.Status == 0 && s.o.Failover {
		alive := 0
		for _, t := range s.o.Targets {
			if !s.dead[t] && t != target {
				alive++
			}
		}
		if alive > 0 {
			s.dead[target] = true
		}
	}
	if !retry {
		s.retries = append(s.retries, ids)
	}
	return r
}

// Burst sends n new events in one request to target, synchronously, and
// reports whether they were acknowledged.
func (s *Sender) Burst(target string, n int) bool {
	s.mu.Lock()
	ids := make([]string, n)
	for i := range ids {
		s.seq++
		ids[i] = fmt.Sprintf("%s-%06d", s.o.Prefix, s.seq)
	}
	s.mu.Unlock()
	// Marked as a retry so it is not sent again: its outcome is the test's.
	return s.post(target, ids, true).Status == http.StatusOK
}

// Stop stops the load and waits for the requests in flight.
func (s *Sender) Stop() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.wg.Wait()
}

// Requests returns every request made so far.
func (s *Sender) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

// Ledger returns the ids sent and the ids acknowledged.
func (s *Sender) Ledger() (sent, acked map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sent, acked = make(map[string]bool, len(s.sent)), make(map[string]bool, len(s.acked))
	for id := range s.sent {
		sent[id] = true
	}
	for id := range s.acked {
		acked[id] = true
	}
	return sent, acked
}

// Between returns the requests that started in [from, to).
func Between(reqs []Request, from, to time.Time) []Request {
	var out []Request
	for _, r := range reqs {
		if !r.Start.Before(from) && r.Start.Before(to) {
			out = append(out, r)
		}
	}
	return out
}

// StatusCounts summarizes requests by status, for messages.
func StatusCounts(reqs []Request) map[int]int {
	m := map[int]int{}
	for _, r := range reqs {
		m[r.Status]++
	}
	return m
}
