# sluice: one static-ish binary (cgo for libpg_query, PostgreSQL's own parser).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -trimpath -o /out/sluice ./cmd/sluice

FROM debian:bookworm-slim
COPY --from=build /out/sluice /usr/local/bin/sluice
ENTRYPOINT ["sluice"]
