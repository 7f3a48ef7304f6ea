# portcullis — the two commands a newcomer needs:
#   make run    run the server on embedded defaults (data in ./data)
#   make test   install what the tests need, then vet, staticcheck and every test with -race
GO         ?= go
STATICCHECK = $(shell $(GO) env GOPATH)/bin/staticcheck
# The whole suite runs in well under 30 minutes on 2 cores; the timeout is a backstop.
TESTFLAGS  ?= -race -timeout 25m

.PHONY: run test deps vet lint build bench fuzz

run:
	$(GO) run ./cmd/portcullis serve

build:
	$(GO) build -o portcullis ./cmd/portcullis

deps:
	bash scripts/install-test-deps.sh

vet:
	$(GO) vet ./...
	cd bench && $(GO) vet ./...

lint: vet
	$(STATICCHECK) ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

test: deps lint
	$(GO) test $(TESTFLAGS) ./...

# Every fuzz target in turn, each for FUZZTIME executions (not part of test).
fuzz:
	bash scripts/fuzz.sh

# Benchmarks (not part of test): go test -bench, and the scripts comparing with peers.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
