# crishim — build, run and test. Targets that install or run things need root.

export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)

GO        ?= go
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/crishim/crishim/internal/version.Version=$(VERSION)
PAUSE     := internal/image/pausebin/pause
BIN       := bin/crishim
# go test's own limit per package binary, and a hard stop for the whole run.
TEST_TIMEOUT  ?= 15m
TOTAL_TIMEOUT ?= 25m
PROTOC_GEN_GO := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12

.PHONY: all build pause deps run test unit integration e2e k8s lint proto fuzz churn clean deb bench bench-scale

all: build

# The pause program is embedded in crishim (go:embed), so it is built first.
pause: $(PAUSE)

$(PAUSE): internal/image/pausebin/pause.c
	@mkdir -p $(dir $@)
	gcc -static -Os -s -o $@ $<

build: $(PAUSE)
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/crishim

# Debian packages the build, `make run` and the tests need; only missing ones are installed.
deps:
	hack/install-deps.sh

# A private containerd when none answers at the configured address, then the
# preflight (`crishim check`), then crishim in the foreground. RUN_ARGS go to
# `crishim check` and `crishim serve`, e.g. RUN_ARGS="--log-level debug".
RUN_ARGS ?=
run: deps build
	hack/run.sh $(RUN_ARGS)

# Unit tests, then the integration tests (which start their own containerd,
# registry and crishim; they need root), then the Kubernetes e2e suites (a
# kubelet, then a one-node cluster, on crishim). The Kubernetes binaries are
# built first when hack/build-k8s.sh's cache lacks them (~15-30 minutes on
# two cores; later runs reuse them).
E2E_TIMEOUT ?= 30m
test: deps build k8s
	$(GO) vet ./...
	timeout --foreground --kill-after=30s $(TOTAL_TIMEOUT) $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $$($(GO) list ./... | grep -v /integration/e2e)
	$(GO) test -count=1 -run '^$$' -fuzz '^FuzzValidate$$' -fuzztime $(TEST_FUZZTIME) ./server/
	$(MAKE) --no-print-directory e2e

# kubelet, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
# kube-proxy and etcd, from the Go module proxy as integration/e2e/tools pins
# them, into /var/cache/crishim/k8s (CRISHIM_K8S_CACHE), never the repository.
k8s:
	hack/build-k8s.sh >/dev/null

# The node suite (standalone kubelet, static pods; with and without the
# EventedPLEG gate) and the cluster suite (rolling updates with zero failed
# requests, jobs, kubectl exec/logs/port-forward).
e2e: $(PAUSE)
	CRISHIM_K8S_BIN=$$(hack/build-k8s.sh) timeout --foreground --kill-after=30s $(E2E_TIMEOUT) $(GO) test -race -count=1 -timeout $(E2E_TIMEOUT) ./integration/e2e/

# containerd's own CRI plugin (A) against crishim (B). Not part of `make
# test`: timings are no pass/fail matter (`make test` only compiles the
# benchmarks). BENCH picks the rounds:
#   cri      the CRI rounds: both on one private containerd with its own
#            registry and one CNI bridge each; the B/A table goes to
#            BENCH_OUT. BENCH_ARGS e.g. "-quick" or "-rounds 4 -pods 40".
#   kubelet  the same kubelet configuration in front of each runtime
#            (integration/e2e BenchmarkKubeletBurst and BenchmarkKubeletIdle,
#            built without -race; ~25 minutes with the defaults); the tables
#            go to KBENCH_OUT. KBENCH_ARGS e.g. "-burst.rounds 2 -idle.rounds 2
#            -idle.window 5m -idle.pods 100".
#   all      both.
BENCH       ?= cri
BENCH_ARGS  ?=
BENCH_OUT   ?= bench/results.md
KBENCH_ARGS ?=
KBENCH_OUT  ?= bench/results-kubelet.md
KBENCH_TIMEOUT ?= 3h
bench: deps build
ifneq ($(filter $(BENCH),cri all),)
	CGO_ENABLED=0 $(GO) build -o bin/crishim-bench ./cmd/crishim-bench
	bin/crishim-bench -crishim $(CURDIR)/$(BIN) -out $(BENCH_OUT) $(BENCH_ARGS)
endif
ifneq ($(filter $(BENCH),kubelet all),)
	rm -f $(KBENCH_OUT)
	CRISHIM_K8S_BIN=$$(hack/build-k8s.sh) $(GO) test -count=1 -timeout $(KBENCH_TIMEOUT) -v -run '^$$' \
		-bench '^BenchmarkKubelet(Burst|Idle)$$' -benchtime 1x ./integration/e2e/ \
		-kbench.out $(abspath $(KBENCH_OUT)) $(KBENCH_ARGS)
endif
ifeq ($(filter $(BENCH),cri kubelet all),)
	@echo "BENCH=$(BENCH): want cri, kubelet or all"; exit 2
endif

# The scale round alone: SCALE running pods per runtime (fewer when memory or
# pids do not allow), the list/status/stats calls timed with all of them up,
# the daemons' RSS, the time to start and to remove them, and what is left.
SCALE ?= 500
bench-scale: deps build
	CGO_ENABLED=0 $(GO) build -o bin/crishim-bench ./cmd/crishim-bench
	bin/crishim-bench -crishim $(CURDIR)/$(BIN) -out $(BENCH_OUT) -scale $(SCALE) -scale-only $(BENCH_ARGS)

# The Debian package (dpkg-deb only) in bin/: binary, systemd units, default
# config, kubelet notes. The integration suite installs and removes it (deb_test.go).
deb: build
	hack/build-deb.sh $(BIN) bin $(VERSION)

unit: $(PAUSE)
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /integration)

integration: $(PAUSE)
	timeout --foreground --kill-after=30s $(TOTAL_TIMEOUT) $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) -v ./integration/

lint: $(PAUSE)
	@out=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# The generated code is committed; the generator is pinned so that it only changes with the .proto.
proto:
	@protoc-gen-go --version 2>/dev/null | grep -qx "protoc-gen-go $(lastword $(subst @, ,$(PROTOC_GEN_GO)))" || $(GO) install $(PROTOC_GEN_GO)
	protoc --go_out=. --go_opt=paths=source_relative proto/crishim.proto

# Two fuzz targets, each run for FUZZTIME: FuzzValidate (the checks made
# before any containerd call; no external state, thousands of inputs a
# second) and FuzzCRIRequests (the real handlers in-process on a private
# containerd; root, a few inputs a second). `make test` runs both seed
# corpora (server/testdata/fuzz and f.Add), then FuzzValidate for TEST_FUZZTIME.
FUZZTIME      ?= 60s
TEST_FUZZTIME ?= 10s
fuzz: $(PAUSE)
	$(GO) test -count=1 -run '^$$' -fuzz '^FuzzValidate$$' -fuzztime $(FUZZTIME) ./server/
	$(GO) test -count=1 -run '^$$' -fuzz '^FuzzCRIRequests$$' -fuzztime $(FUZZTIME) ./server/

# 1000 pod lifecycles with leak accounting (`make test` runs 50).
CHURN ?= 1000
churn: $(PAUSE)
	$(GO) test -race -count=1 -timeout 60m -v ./integration/ -run '^TestChurn$$' -churn $(CHURN)

clean:
	rm -rf bin $(PAUSE)
