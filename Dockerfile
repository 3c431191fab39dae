# syntax=docker/dockerfile:1
#
# The sluice image: one static binary on distroless, running as non-root.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg COMMIT=$(git rev-parse HEAD) -t ghcr.io/sluice-dev/sluice:dev .
#
# Not built in this repository's CI: its machines have no container engine.
# The chart's tests render and dry-run the manifests that run this image,
# and the e2e tests run the same binary as a process.

FROM golang:1.26 AS build
WORKDIR /src
# Module downloads are cached in their own layer, keyed by go.mod/go.sum.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
ARG TARGETOS=linux
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/sluice ./cmd/sluice

# distroless/static has CA certificates and tzdata (freeze windows name time
# zones) and nothing else; :nonroot runs as uid/gid 65532, as the chart's
# securityContext expects.
FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/sluice /sluice
USER 65532:65532
EXPOSE 9443 18000 8080 8081
ENTRYPOINT ["/sluice"]
CMD ["controller"]
