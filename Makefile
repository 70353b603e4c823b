# envplane: `make run` serves the embedded default; `make test` runs the full suite.
GO      ?= go
BENCH_COUNT ?= 6
# FUZZTIME is a count of inputs, not a duration: go1.26's fuzz coordinator can
# report "context deadline exceeded" as a failure when a -fuzztime duration
# ends while a worker is busy (golang/go#75804, fixed in Go 1.27), and that
# failed CI with no failing input. A count has no deadline to race.
FUZZTIME ?= 4000x

.PHONY: run test fuzz build bench bench-scale lint tools clean

## run: serve on 127.0.0.1:8080 with everything under ./data (SQLite store, SQLite target, local keyring)
run:
	$(GO) run ./cmd/envplane serve

## test: the full suite; PostgreSQL at 127.0.0.1:5432, tursodb and vaultdev (installed into .tools) are used when present
test: tools
	$(GO) run gotest.tools/gotestsum@v1.13.0 --format pkgname-and-test-fails -- -count=1 -timeout 30m ./...

## fuzz: every fuzz target (func FuzzXxx in a _test.go file) for FUZZTIME inputs each (a duration such as FUZZTIME=1m works too, see above); go test -fuzz takes one target per run, hence the loop. An input that fails is written to the package's testdata/fuzz/FuzzXxx: commit it with the fix, and make test replays it from then on
fuzz:
	@set -e; for file in $$(git ls-files --cached --others --exclude-standard '*_test.go' | xargs grep -l '^func Fuzz'); do \
		for target in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' $$file | cut -d' ' -f2); do \
			echo "fuzz ./$$(dirname $$file) $$target"; \
			$(GO) test ./$$(dirname $$file) -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME); \
		done; \
	done

## build: bin/envplane and bin/envctl
build:
	$(GO) build -o bin/envplane ./cmd/envplane
	$(GO) build -o bin/envctl ./cmd/envctl

## bench: every benchmark, BENCH_COUNT runs each, summarised as medians by benchstat; the scale benchmarks compare 100 environments with SCALE_ENVS (default 10000 here)
bench: tools
	$(GO) test -run '^$$' -bench . -benchmem -count $(BENCH_COUNT) ./... | tee bench.out
	$(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da bench.out

## bench-scale: the scale benchmarks (BenchmarkScale, BenchmarkServeStart, BenchmarkSeed) once, with SCALE_ENVS=100000 beside 100; seeding 100k takes about 30 s on SQLite and 3 min on PostgreSQL, the whole run about 10 min (9 min 46 s on an idle machine, 2026-12-03)
bench-scale:
	SCALE_ENVS=$${SCALE_ENVS:-100000} $(GO) test -run '^$$' -bench 'BenchmarkScale|BenchmarkServeStart|BenchmarkSeed' -count 1 -timeout 60m ./controlplane/httpapi ./cmd/envplane ./controlplane/scaletest | tee bench-scale.out

## lint: gofmt and go vet
lint:
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## tools: tursodb for the Turso data-plane tests, vaultdev for the vault keyring's (a failure is fatal only under CI=true, where those tests must run)
tools:
	@bash .ci/install-tursodb >/dev/null || [ "$$CI" != "true" ]
	@bash .ci/install-vaultdev >/dev/null || [ "$$CI" != "true" ]

clean:
	rm -rf bin bench.out bench-scale.out
