# Holdfast: `make run` starts the service for development, `make test` runs
# every test. Both install PostgreSQL's binaries first if the machine lacks them.

GO        ?= go
GOFLAGS   ?=
TESTFLAGS ?= -race -count=1 -timeout 20m
# ARGS go to `holdfast dev` in `make run`, e.g. make run ARGS=--reset
ARGS      ?=
# SOAK_ARGS go to `holdfast-lab bench soak` in `make bench-soak`, e.g. SOAK_ARGS=--duration=10m
SOAK_ARGS ?=

# `holdfast version` prints these beside the binary's build information: the
# build's time, and its commit, which the Go toolchain does not record from a
# git worktree.
BUILD_TIME := $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
COMMIT     := $(shell c=$$(git rev-parse HEAD 2>/dev/null) && { git diff --quiet HEAD 2>/dev/null || c=$$c-dirty; echo $$c; })
LDFLAGS    := -X main.buildTime=$(BUILD_TIME) -X main.commit=$(COMMIT)

.PHONY: run test build image vet lint rules deps clean bench-transfers bench-export bench-events bench-receipts bench-overload bench-webhooks bench-soak lab

## run: build bin/holdfast (and bin/holdfast-lab) and serve on 127.0.0.1:8080 with a private PostgreSQL and embedded NATS in
## .holdfast/, plus a demo tenant kept there (make clean, or make run ARGS=--reset, starts over).
## Ctrl-C reaches the service, which shuts down cleanly and exits 0; make itself then dies of
## the same SIGINT (status 130 in the shell): GNU make re-raises a terminal's SIGINT once its
## recipe has exited, whatever the recipe's status. bin/holdfast dev exits 0.
run: deps build
	exec bin/holdfast dev $(ARGS)

## test: vet, gofmt, staticcheck and the alert rules' tests, then every test under the race detector
## (starts its own PostgreSQL and NATS; the console's tests drive a headless Chromium)
test: deps vet lint rules
	@scripts/ensure-apt.sh chromium chromium
	$(GO) test $(TESTFLAGS) ./...

## rules: check the Prometheus alert rules in deploy/prometheus and run their unit tests (promtool)
rules:
	@scripts/ensure-apt.sh promtool prometheus
	promtool check rules deploy/prometheus/alerts.yml
	cd deploy/prometheus && promtool test rules alerts_test.yml

## bench-transfers: group commit vs one transaction per request vs the raw SQL ceiling (about 2.5 minutes)
bench-transfers: deps build
	bin/holdfast-lab bench transfers

## bench-export: streaming CSV export vs psql \copy and vs a buffered export, 2,000,000 entries (about 4 minutes)
bench-export: deps build
	bin/holdfast-lab bench export

## bench-events: ingest through POST /v1/events vs raw JetStream; a 10× burst against slow consumers (about 7 minutes)
bench-events: deps build
	bin/holdfast-lab bench events

## bench-receipts: a spike of 50,000 uploads a minute for 2 minutes: capped workers vs a goroutine per message (about 15 minutes)
bench-receipts: deps build
	bin/holdfast-lab bench receipts

## bench-overload: open loop at 0.5×–5× capacity, overload protection on vs off; /healthz under CPU load (about 2 minutes)
bench-overload: deps build
	bin/holdfast-lab bench overload

## bench-webhooks: 100 endpoints, 3 bad, while transfers run: Holdfast's delivery vs one shared pool (about 5 minutes)
bench-webhooks: deps build
	bin/holdfast-lab bench webhooks

## bench-soak: mixed traffic at half capacity for 30 minutes, retention limits shrunk; memory, storage and lag over time,
## checks at the end (about 32 minutes; SOAK_ARGS=--duration=10m for a shorter run), samples and charts in soak-results/
bench-soak: deps build
	bin/holdfast-lab bench soak $(SOAK_ARGS)

## lab: every scenario of the seed, naive beside Holdfast; reports and charts in lab-results/ (about 3 minutes)
lab: deps build
	bin/holdfast-lab lab all

## build: the binaries in bin/: holdfast, the service, and holdfast-lab, the benchmarks and lab scenarios
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/holdfast ./cmd/holdfast
	$(GO) build -o bin/holdfast-lab ./cmd/holdfast-lab

## image: the container image holdfast:local (deploy/container/Dockerfile: a static binary FROM scratch; needs Docker)
image:
	docker build -f deploy/container/Dockerfile --build-arg COMMIT=$(COMMIT) --build-arg BUILD_TIME=$(BUILD_TIME) -t holdfast:local .

vet:
	$(GO) vet ./...

STATICCHECK_VERSION := v0.8.2
STATICCHECK         := bin/tools/staticcheck

## lint: every Go file gofmt-formatted, and staticcheck (installed into bin/tools on first use)
lint: $(STATICCHECK)
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:" $$unformatted >&2; exit 1; fi
	$(STATICCHECK) ./...

$(STATICCHECK):
	GOBIN=$(CURDIR)/bin/tools $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

deps:
	@scripts/ensure-postgres.sh
	@scripts/ensure-nats.sh

## clean: delete the binaries and .holdfast/ (the dev database, event log, receipt images and demo credentials)
clean:
	rm -rf bin .holdfast
