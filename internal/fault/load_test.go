package fault

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

// request is one POST /e/{key} the sender made.
type request struct {
	start   time.Time
	latency time.Duration
	target  string
	ids     []string
	status  int // 0: no HTTP answer (connection refused or reset, timeout)
	err     string
	retry   bool // a second attempt of a failed request, with the same ids
}

// senderOpts configures the load.
type senderOpts struct {
	// targets are Herald base URLs, used in turn.
	targets []string
	// failover stops using a target once a request to it gets no HTTP
	// answer, as long as another target is left.
	failover bool
	event    string        // event name
	prefix   string        // event id prefix
	interval time.Duration // between requests
	timeout  time.Duration // of one request
	inflight int           // requests in flight at most
}

// sender POSTs events with client-chosen ids, one to three per request, every
// interval, and records which ids were acknowledged. A request that fails is
// sent once more, with the same ids, a little later: Herald deduplicates ids,
// so the retry may acknowledge events the first attempt stored unannounced.
type sender struct {
	o    senderOpts
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
	reqs    []request
}

func startSender(o senderOpts) *sender {
	if o.timeout == 0 {
		o.timeout = 5 * time.Second
	}
	if o.inflight == 0 {
		o.inflight = 8
	}
	s := &sender{
		o: o,
		hc: &http.Client{Timeout: o.timeout, Transport: &http.Transport{
			MaxIdleConnsPerHost: o.inflight,
			// Fail fast on a dead server rather than wait out the timeout.
			ResponseHeaderTimeout: o.timeout,
		}},
		slot:  make(chan struct{}, o.inflight),
		stop:  make(chan struct{}),
		dead:  map[string]bool{},
		sent:  map[string]bool{},
		acked: map[string]bool{},
	}
	s.wg.Add(1)
	go s.loop()
	return s
}

func (s *sender) loop() {
	defer s.wg.Done()
	tick := time.NewTicker(s.o.interval)
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
func (s *sender) nextIDs() ([]string, bool) {
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
		ids[i] = fmt.Sprintf("%s-%06d", s.o.prefix, s.seq)
	}
	return ids, false
}

func (s *sender) pickTarget() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range s.o.targets {
		t := s.o.targets[s.next%len(s.o.targets)]
		s.next++
		if !s.dead[t] {
			return t
		}
	}
	return s.o.targets[s.next%len(s.o.targets)]
}

// post sends one request and records its outcome.
func (s *sender) post(target string, ids []string, retry bool) request {
	events := make([]map[string]any, len(ids))
	for i, id := range ids {
		events[i] = map[string]any{"name": s.o.event, "id": id, "data": map[string]any{"i": i}}
	}
	body, _ := json.Marshal(events)
	s.mu.Lock()
	for _, id := range ids {
		s.sent[id] = true
	}
	s.mu.Unlock()

	r := request{start: time.Now(), target: target, ids: ids, retry: retry}
	resp, err := s.hc.Post(target+"/e/"+eventKey, "application/json", bytes.NewReader(body))
	var raw []byte
	if err == nil {
		raw, err = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		r.status = resp.StatusCode
	}
	r.latency = time.Since(r.start)
	if err != nil {
		r.status, r.err = 0, err.Error()
	}
	acked := false
	if r.status == http.StatusOK {
		var out struct {
			IDs []string `json:"ids"`
		}
		if jerr := json.Unmarshal(raw, &out); jerr != nil || !slices.Equal(out.IDs, ids) {
			r.err = fmt.Sprintf("200 with unexpected ids: %s", raw)
		} else {
			acked = true
		}
	} else if r.status != 0 {
		r.err = string(raw)
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
	if r.status == 0 && s.o.failover {
		alive := 0
		for _, t := range s.o.targets {
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

// burst sends n new events in one request to target, synchronously, and
// reports whether they were acknowledged.
func (s *sender) burst(target string, n int) bool {
	s.mu.Lock()
	ids := make([]string, n)
	for i := range ids {
		s.seq++
		ids[i] = fmt.Sprintf("%s-%06d", s.o.prefix, s.seq)
	}
	s.mu.Unlock()
	// Marked as a retry so it is not sent again: its outcome is the test's.
	return s.post(target, ids, true).status == http.StatusOK
}

// Stop stops the load and waits for the requests in flight.
func (s *sender) Stop() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.wg.Wait()
}

func (s *sender) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

// ledger returns the ids sent and the ids acknowledged.
func (s *sender) ledger() (sent, acked map[string]bool) {
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

// between returns the requests that started in [from, to).
func between(reqs []request, from, to time.Time) []request {
	var out []request
	for _, r := range reqs {
		if !r.start.Before(from) && r.start.Before(to) {
			out = append(out, r)
		}
	}
	return out
}

// statusCounts summarizes requests by status, for messages.
func statusCounts(reqs []request) map[int]int {
	m := map[int]int{}
	for _, r := range reqs {
		m[r.status]++
	}
	return m
}
