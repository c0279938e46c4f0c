# rugwatch in a container: the daemon, as a non-root user, with node and
# npx for the stdio servers most MCP configs run, the data dir on a volume
# and the config mounted read-only.
#
#   docker build -t rugwatch .
#   docker run -d --name rugwatch \
#     --security-opt seccomp=unconfined \
#     --security-opt apparmor=unconfined \
#     --security-opt systempaths=unconfined \
#     -v rugwatch-data:/var/lib/rugwatch \
#     -v $PWD/rugwatch.yaml:/etc/rugwatch/rugwatch.yaml:ro \
#     rugwatch
#
# rugwatch's own sandbox (user, PID, mount and network namespaces, its own
# seccomp filter) keeps running inside the container, and needs the runtime
# to let it: docker's default seccomp profile refuses CLONE_NEWUSER, its
# AppArmor profile refuses mounts, and its masked /proc paths stop a fresh
# proc from being mounted; the three options above lift exactly that, for
# a container that still has no capabilities (it runs as the node user).
# podman allows nested user namespaces by default. Without them the
# default `sandbox: auto` runs servers unconfined and marks them NOT
# SANDBOXED in status and the web view; `sandbox: strict` refuses them.
#
# The config's data_dir should be /var/lib/rugwatch. Approve tools with
#   docker exec -it rugwatch rugwatch approve SERVER --all
# (the CLI reaches the daemon through its socket in the data dir).

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/rugwatch ./cmd/rugwatch

FROM node:22-bookworm-slim
COPY --from=build /out/rugwatch /usr/local/bin/rugwatch
RUN mkdir -p /var/lib/rugwatch /etc/rugwatch && chown node:node /var/lib/rugwatch && chmod 0700 /var/lib/rugwatch
VOLUME /var/lib/rugwatch
ENV RUGWATCH_CONFIG=/etc/rugwatch/rugwatch.yaml HOME=/var/lib/rugwatch
USER node:node
ENTRYPOINT ["/usr/local/bin/rugwatch"]
CMD ["serve"]
