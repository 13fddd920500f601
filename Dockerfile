# syntax=docker/dockerfile:1

# Herald container image: one image carries both the API server (`herald`) and the
# example worker (`herald-demo`), so docker-compose.yml builds it once and runs it
# as herald-migrate, herald and worker.

# ---- build ------------------------------------------------------------------
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src

# Download modules in their own layer so source edits don't refetch them.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .
# Static, CGO-free binaries (SQLite is the pure-Go modernc driver), so they run
# on distroless/static.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    export CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH:-amd64} && \
    go build -trimpath -buildvcs=false -ldflags="-s -w" -o /out/herald ./cmd/herald && \
    go build -trimpath -buildvcs=false -ldflags="-s -w" -o /out/herald-demo ./examples/demo

# ---- runtime ----------------------------------------------------------------
# distroless/static has no shell or curl, so docker-compose.yml has no HTTP
# healthcheck for Herald; ordering uses one-shot jobs and depends_on instead.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/herald /out/herald-demo /usr/local/bin/
WORKDIR /home/nonroot
USER nonroot:nonroot
EXPOSE 8288
ENTRYPOINT ["/usr/local/bin/herald"]
CMD ["serve"]
