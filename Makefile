# hookrelay: `make run` runs the relay on built-in defaults with ./providers.d,
# `make test` runs every test. Both install what they need through the Go module proxy.
GO ?= go
BIN := bin/hookrelay
export GOFLAGS ?= -mod=mod


.PHONY: build run test check-config vet bench clean

build:
	$(GO) build -o $(BIN) ./cmd/hookrelay

# make run gives the example provider a development-only secret, unless one
# is set, so that it is enabled; real deployments set their own.
run: build
	EXAMPLE_WEBHOOK_SECRET=$${EXAMPLE_WEBHOOK_SECRET:-dev-only-example-secret} ./$(BIN) serve

# Unit, integration and crash tests, then the binary checks its own shipped
# config and runs every provider's recorded cases.
test: vet build
	$(GO) test -race -count=1 -timeout 15m ./...
	./$(BIN) check
	./$(BIN) test

vet:
	@test -z "$$(gofmt -l cmd engine verifiers transforms)" || (gofmt -l cmd engine verifiers transforms; exit 1)
	$(GO) vet ./...

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 3s ./engine/...

clean:
	rm -rf bin data
