package prodtest

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
	start  time.Time
	target string
	status int // 0: no HTTP answer
	err    string
}

// sender POSTs events with client-chosen ids, one to three per request,
// every interval, to its targets in turn, and records which ids were
// acknowledged. A failed request is sent once more with the same ids (Herald
// deduplicates ids). With failover, a target that gave no HTTP answer is not
// used again while another is left: what a load balancer's health check does.
type sender struct {
	targets  []string
	failover bool
	event    string
	prefix   string
	hc       *http.Client
	slot     chan struct{}
	stop     chan struct{}
	wg       sync.WaitGroup

	mu      sync.Mutex
	dead    map[string]bool
	next    int
	seq     int
	retries [][]string
	sent    map[string]bool
	acked   map[string]bool
	reqs    []request
}

func startSender(targets []string, failover bool, event, prefix string, interval time.Duration) *sender {
	s := &sender{
		targets: targets, failover: failover, event: event, prefix: prefix,
		hc:    &http.Client{Timeout: 5 * time.Second},
		slot:  make(chan struct{}, 8),
		stop:  make(chan struct{}),
		dead:  map[string]bool{},
		sent:  map[string]bool{},
		acked: map[string]bool{},
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tick := time.NewTicker(interval)
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
				continue // eight requests in flight: skip this tick
			}
			ids, retry := s.nextIDs()
			target := s.pickTarget()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() { <-s.slot }()
				s.post(target, ids, retry)
			}()
		}
	}()
	return s
}

func (s *sender) nextIDs() ([]string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.retries) > 0 {
		ids := s.retries[0]
		s.retries = s.retries[1:]
		return ids, true
	}
	ids := make([]string, s.seq%3+1)
	for i := range ids {
		s.seq++
		ids[i] = fmt.Sprintf("%s-%06d", s.prefix, s.seq)
	}
	return ids, false
}

func (s *sender) pickTarget() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range s.targets {
		t := s.targets[s.next%len(s.targets)]
		s.next++
		if !s.dead[t] {
			return t
		}
	}
	return s.targets[s.next%len(s.targets)]
}

func (s *sender) post(target string, ids []string, retry bool) {
	events := make([]map[string]any, len(ids))
	for i, id := range ids {
		events[i] = map[string]any{"name": s.event, "id": id, "data": map[string]any{"i": i}}
	}
	body, _ := json.Marshal(events)
	s.mu.Lock()
	for _, id := range ids {
		s.sent[id] = true
	}
	s.mu.Unlock()
	r := request{start: time.Now(), target: target}
	resp, err := s.hc.Post(target+"/e/"+EventKey, "application/json", bytes.NewReader(body))
	var raw []byte
	if err == nil {
		raw, err = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		r.status = resp.StatusCode
	}
	if err != nil {
		r.status, r.err = 0, err.Error()
	}
	acked := false
	if r.status == http.StatusOK {
		var out struct {
			IDs []string `json:"ids"`
		}
		if json.Unmarshal(raw, &out) == nil && slices.Equal(out.IDs, ids) {
			acked = true
		} else {
			r.err = "200 with unexpected ids: " + string(raw)
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
		return
	}
	if r.status == 0 && s.failover {
		for _, t := range s.targets {
			if t != target && !s.dead[t] {
				s.dead[target] = true
				break
			}
		}
	}
	if !retry {
		s.retries = append(s.retries, ids)
	}
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

func (s *sender) ledger() (sent, acked map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sent, acked = map[string]bool{}, map[string]bool{}
	for id := range s.sent {
		sent[id] = true
	}
	for id := range s.acked {
		acked[id] = true
	}
	return sent, acked
}

func statusCounts(reqs []request) map[int]int {
	m := map[int]int{}
	for _, r := range reqs {
		m[r.status]++
	}
	return m
}

func between(reqs []request, from, to time.Time) []request {
	var out []request
	for _, r := range reqs {
		if !r.start.Before(from) && r.start.Before(to) {
			out = append(out, r)
		}
	}
	return out
}
