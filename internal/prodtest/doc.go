// Package prodtest runs Herald's production topology as processes on
// loopback, and tests and measures it (`make prodtest`, `make prodbench`):
//
//   - the Temporal server v1.29.1 (the release of the dev server the other
//     tests use), built from source into ./bin with its SQL tool, with
//     PostgreSQL persistence and visibility in databases of its own
//     (herald_prod_*, created with the SQL tool as docker-compose.yml's
//     temporal-schema job does, dropped afterwards), started from
//     deploy/temporal/config/herald.yaml (4 history shards) and
//     deploy/temporal/dynamicconfig/herald.yaml, the files
//     docker-compose.yml's values are checked against;
//   - the namespace, then `herald migrate` for Herald's database and search
//     attributes;
//   - two `herald serve` replicas on one Herald database, each on its own
//     address, behind a round-robin load balancer (Balancer);
//   - the example worker (examples/demo), reaching Herald through the
//     balancer.
//
// The tests (run only with HERALD_PRODTEST=1, which `make prodtest` sets)
// are a subset of the e2e suite against the example app — event to run,
// waitForEvent, cancelOn, a cron schedule, debounce, batch, a signed webhook
// — and two fault scenarios with internal/fault's accounting: the Temporal
// server SIGKILLed mid-load and restarted, and one replica SIGKILLed
// mid-load. Each prints
//
//	fault: prod-<scenario> sent=N acked=N stored=N runs=N duplicates=N lost=N
//
// Every process runs in its own process group and dies with the test
// binary; HERALD_PRODTEST_KEEP_LOGS=1 keeps their logs.
package prodtest
