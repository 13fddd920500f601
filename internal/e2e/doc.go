// Package e2e holds Herald's end-to-end tests: real HTTP, a real PostgreSQL
// (and SQLite), a real Temporal dev server and a real worker, all on loopback.
package e2e
