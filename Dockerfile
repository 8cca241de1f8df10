# Multi-stage build: a static binary on an empty base, running as a non-root user.
#
# The image runs serve with examples/container.yaml: both listeners on every interface (a
# container's loopback is its own), each behind a token read from
# /run/secrets/apisessions-grpc-token and /run/secrets/apisessions-api-token (one token per
# file, mode 0600, owned by uid 65532). Without them it refuses to start and says which file
# is missing. Mount your own configuration over /etc/apisessions/apisessions.yaml to choose
# otherwise (mTLS, or allow_unauthenticated_* where a network policy decides who connects).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/apisessions/apisessions/cmd/apisessions/app.Version=${VERSION} -X github.com/apisessions/apisessions/cmd/apisessions/app.Commit=${COMMIT}" \
      -o /out/apisessions ./cmd/apisessions \
 && mkdir -p /out/data && chown 65532:65532 /out/data && chmod 0700 /out/data

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
COPY --from=build /out/apisessions /apisessions
COPY --from=build /src/examples/container.yaml /etc/apisessions/apisessions.yaml
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
WORKDIR /
ENV APISESSIONS_DATA_DIR=/data
EXPOSE 50051 8080
VOLUME ["/data"]
ENTRYPOINT ["/apisessions"]
CMD ["serve", "--config", "/etc/apisessions/apisessions.yaml"]
