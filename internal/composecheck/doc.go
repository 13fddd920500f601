// Package composecheck holds the test that loads docker-compose.yml (and checks
// the Dockerfile and .dockerignore it builds from) with the Compose
// Specification's Go loader, so the local all-in-one topology cannot silently
// regress: service set, published ports, start-up ordering, Herald's
// environment and the Temporal schema/namespace jobs; and that the compose
// Temporal service and deploy/temporal (the config `make prodtest` runs the
// server with) describe the same cluster.
package composecheck
