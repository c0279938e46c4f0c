# rugwatch in a container: the daemon, as a non-root user, with the data
# dir on a volume and the config mounted read-only.
#
#   docker build -t rugwatch .
#   docker run -d --name rugwatch \
#     -v rugwatch-data:/var/lib/rugwatch \
#     -v $PWD/rugwatch.yaml:/etc/rugwatch/rugwatch.yaml:ro \
#     rugwatch
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

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/rugwatch /usr/local/bin/rugwatch
VOLUME /var/lib/rugwatch
ENV RUGWATCH_CONFIG=/etc/rugwatch/rugwatch.yaml
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/rugwatch"]
CMD ["serve"]
