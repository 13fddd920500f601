package ingest

import (
	"bytes"
	"time"

	"github.com/herald-run/herald/store"
)

// QueuedCommits reports how many requests wait in the group-commit queue. Tests
// use it to line requests up behind a held commit, so that what a group commit
// carries is decided by the test rather than by the scheduler.
func (s *Server) QueuedCommits() int { return len(s.committer.queue) }

// Closing reports whether Close has begun: new commits are refused from then on.
func (s *Server) Closing() bool {
	s.committer.mu.RLock()
	defer s.committer.mu.RUnlock()
	return s.committer.closed
}

// DecodeCareful is the per-element decoding path that DecodeEvents falls back
// to; the fuzz target checks both paths agree.
func DecodeCareful(body []byte, limits Limits, now time.Time) ([]store.Event, error) {
	return decodeCareful(bytes.TrimSpace(body), limits.withDefaults(), now.UTC().Truncate(time.Millisecond))
}
