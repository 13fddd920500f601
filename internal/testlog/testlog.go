// Package testlog holds what Herald's tests use to read a server's log while
// it writes.
package testlog

import (
	"bytes"
	"sync"
)

// Buffer is a log sink safe for one writer and concurrent readers: a test
// hands it to a server's slog handler and reads it while the server runs.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
