package wire

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"time"

	"github.com/oklog/ulid/v2"
)

// RunID is the deterministic id of the run of a function for an event: a
// ULID whose time is the event's arrival and whose randomness comes from the
// key, so a re-dispatch computes the same id.
func RunID(appID, fnID, eventID string, received time.Time) string {
	h := newKeyReader(appID + "/" + fnID + "/" + eventID)
	return ulid.MustNew(ulid.Timestamp(received), h).String()
}

// WorkflowID is the deterministic Temporal workflow id of the run of a
// function for an event: `<app>/<function>/<event id>`.
func WorkflowID(appID, fnID, eventID string) string {
	return appID + "/" + fnID + "/" + eventID
}

// keyReader is an endless deterministic byte stream derived from a key, used
// as ULID entropy.
type keyReader struct {
	state uint64
}

func newKeyReader(key string) io.Reader {
	// FNV-1a of the key seeds a splitmix64 stream.
	h := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	return &keyReader{state: h}
}

func (r *keyReader) Read(p []byte) (int, error) {
	for i := range p {
		if i%8 == 0 {
			r.state += 0x9e3779b97f4a7c15
		}
		z := r.state
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
		p[i] = byte(z >> (8 * (i % 8)))
	}
	return len(p), nil
}

// DerivedIDPrefix starts every event id Herald derives itself: system events
// (herald/function.*), the events step.SendEvent sends without an id, the
// event of a cron or invoked run. Clients sending with an event key, and
// webhook deliveries, cannot use it, so no one can take such an id first and
// suppress the event Herald stores under it.
const DerivedIDPrefix = "herald:"

// DerivedEventID returns the deterministic event id of parts: a retry
// derives the same id, so the event is stored once.
func DerivedEventID(parts ...string) string {
	return DerivedIDPrefix + DerivedID(parts...)
}

// DerivedID returns 32 hex digits of the SHA-256 of parts, each ended by a
// NUL byte, so ("a", "bc") and ("ab", "c") differ.
func DerivedID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
