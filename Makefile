# Holdfast: `make run` starts the service for development, `make test` runs
# every test. Both install PostgreSQL's binaries first if the machine lacks them.

GO        ?= go
GOFLAGS   ?=
TESTFLAGS ?= -race -count=1 -timeout 20m

.PHONY: run test build vet deps clean bench-transfers bench-export bench-events bench-receipts bench-overload lab

## run: build bin/holdfast and serve on :8080 with a private PostgreSQL and embedded NATS in .holdfast/,
## plus a demo tenant (exec: Ctrl-C reaches the service itself, which shuts down and exits 0)
run: deps
	$(GO) build -o bin/holdfast ./cmd/holdfast && exec bin/holdfast dev

## test: vet, then every test under the race detector (starts its own PostgreSQL and NATS)
test: deps vet
	$(GO) test $(TESTFLAGS) ./...

## bench-transfers: group commit vs one transaction per request vs the raw SQL ceiling (about 2.5 minutes)
bench-transfers: deps build
	bin/holdfast bench transfers

## bench-export: streaming CSV export vs psql \copy and vs a buffered export, 2,000,000 entries (about 4 minutes)
bench-export: deps build
	bin/holdfast bench export

## bench-events: ingest through POST /v1/events vs raw JetStream; a 10× burst against slow consumers (about 7 minutes)
bench-events: deps build
	bin/holdfast bench events

## bench-receipts: a spike of 50,000 uploads a minute for 2 minutes: capped workers vs a goroutine per message (about 15 minutes)
bench-receipts: deps build
	bin/holdfast bench receipts

## bench-overload: open loop at 0.5×–5× capacity, overload protection on vs off; /healthz under CPU load (about 2 minutes)
bench-overload: deps build
	bin/holdfast bench overload

## lab: every scenario of the seed, naive beside Holdfast; reports and charts in lab-results/ (about 3 minutes)
lab: deps build
	bin/holdfast lab all

## build: the holdfast binary in bin/
build:
	$(GO) build -o bin/holdfast ./cmd/holdfast

vet:
	$(GO) vet ./...

deps:
	@scripts/ensure-postgres.sh
	@scripts/ensure-nats.sh

clean:
	rm -rf bin .holdfast
