// Package fault holds Herald's fault tests: no acknowledged event is lost,
// and none runs twice, when processes crash and dependencies go away.
//
// Each test drives a steady load of events at `herald serve` (a real
// subprocess, built once per run) while something fails, then checks the
// store and Temporal: every acknowledged event is stored; every stored event
// has exactly one run row, Completed, and exactly one workflow execution
// (id <app>/<fn>/<event id>); no run exists for an event that was not stored.
// A request that failed may or may not have stored its events; an event
// stored without an acknowledgement must still run exactly once.
//
// The scenarios:
//
//   - TestServeKilledAndRestarted: herald serve is SIGKILLed twice mid-load
//     and restarted on the same port.
//   - TestReplicaKilled: two replicas share one database; one is SIGKILLed
//     and the sender moves its traffic to the survivor.
//   - TestTemporalOutage: the Temporal dev server (a subprocess with a
//     database file, restarted on the same port) is stopped mid-load; ingest
//     answers 200 throughout and everything runs once Temporal is back.
//   - TestPostgresOutage: a private PostgreSQL cluster (never the shared one)
//     is stopped mid-load; ingest answers 503 quickly, /readyz names the
//     store, and Herald recovers by itself when the database returns.
//   - TestPostgresFrozen: the private cluster's processes are frozen with
//     SIGSTOP (a database that accepts connections and answers nothing);
//     every request is answered 503 within the commit timeout (2 s), /readyz
//     names the store, and Herald recovers by itself when it resumes.
//   - TestWorkerKilledMidStep: the worker (./faultworker, a process of its
//     own) is SIGKILLed while two-second steps run; a new worker retries them
//     and every run completes once.
//   - TestWorkerKilledDefaultTimeout: the same with Herald's default
//     StepTimeout (5 minutes): the killed steps fail on their 20 s heartbeat
//     timeout, and every run completes within 60 s of the kill.
//   - TestWorkerSIGTERM: a rolling restart under load (the replacement
//     before, then right after, the SIGTERM): the stopping worker finishes
//     its steps; no attempt is interrupted and no run waits more than the
//     grace period (WorkerOptions.StopTimeout).
//   - TestWorkerStopTimeout: steps outlast a worker's grace period; the
//     worker hands them back as it stops, and the replacement retries them
//     within seconds rather than at their heartbeat timeout.
//   - TestCancellationJobTakenOver: a bulk cancellation's replica is
//     SIGKILLed mid-job; the other replica takes the job over from its
//     cursor and every active run ends Cancelled, counted once.
//   - TestRetentionUnderLoad: rows older than the retention are purged
//     while load runs; nothing younger is removed and nothing acknowledged
//     is lost.
//
// Every scenario prints one line, to the test log and to stdout:
//
//	fault: <scenario> sent=N acked=N stored=N runs=N duplicates=N lost=N
//
// By default the scenarios are short (small load, an 8 s Temporal outage) so
// `make test` stays fast. `make faulttest` runs the full versions (longer
// load, a 30 s Temporal outage):
//
//	go test -count=1 -v -timeout 20m ./internal/fault/ -fault.full
//
// (HERALD_FAULT_FULL=1 does the same.) A failing test prints the tail of
// every process's log; HERALD_FAULT_LOGS=1 prints them always. The tests
// need the shared PostgreSQL of the other tests (HERALD_TEST_DATABASE_URL),
// the Temporal CLI (./bin/temporal or HERALD_TEMPORAL_CLI) and, for the
// private cluster of TestPostgresOutage and TestPostgresFrozen, the
// PostgreSQL server binaries (/usr/lib/postgresql/*/bin, or
// HERALD_PG_BIN).
package fault
