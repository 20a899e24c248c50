# kaic's developer targets. `make test` is what CI runs.
GO          ?= go
BIN         := bin/kaic
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# -s -w: no symbol table nor DWARF, as in the release workflow's builds and
# `go run`'s. The binary is also the probe image's only layer, loaded into
# every kind node: 105 MB instead of 149 MB. Stack traces keep their
# function names and lines. (No -trimpath, which the release adds: it would
# compile every package again rather than reuse what the tests built.)
LDFLAGS     := -s -w -X github.com/kaic-dev/kaic/pkg/cmd.version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Tests marked parallel wait out a check's timeout on a control plane
# rather than compute: more of them than cores run at once.
TEST_FLAGS  ?= -timeout 25m -parallel 8
FUZZTIME    ?= 3m
# Go modules of their own that hold code kaic's lab runs (a program built
# into an offline image): tested and linted with the main module.
LAB_MODULES := hack/stackimages/inference-gateway

.PHONY: all build test unit testbin testbin-operators lint fmt fuzz e2e e2e-offline bench bench-kind stack-proof clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/kaic

# testbin builds the real control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kwok) the integration tests run
# against, into a cache outside the repository. Cold: ~15-20 min on 2 cores;
# cached: under 2 s.
testbin:
	@hack/testbin/build.sh >/dev/null

# testbin-operators builds the operator managers some checks' tests run
# against the control plane (Kueue, KubeRay): about 13 more minutes cold. Without
# them those tests skip, saying so (KAIC_REQUIRE_OPERATORS=1 makes that a
# failure; CI sets it when they are cached).
testbin-operators:
	@hack/testbin/build.sh kueue kuberay >/dev/null

# test runs every unit and integration test (and the fuzz seed corpora)
# against the real control plane built by testbin. Its last line says how
# the packages ran side by side: wall time over the slowest package
# (hack/testloop/run.sh).
test: testbin
	@for m in $(LAB_MODULES); do echo "go test in $$m"; (cd $$m && $(GO) test ./...) || exit 1; done
	KAIC_TESTBIN_DIR="$$(KAIC_TESTBIN_QUIET=1 hack/testbin/build.sh)" GO=$(GO) hack/testloop/run.sh $(TEST_FLAGS) ./...

# bench measures the verify phase on the real control plane with kwok nodes
# (no Docker): the accelerator checks on 3 and on 1,000 nodes, in parallel
# and one at a time, with each check's API requests. It prints a table and,
# last, one line of key=value ratios; the JSON goes under bench/.
bench: testbin
	KAIC_TESTBIN_DIR="$$(KAIC_TESTBIN_QUIET=1 hack/testbin/build.sh)" $(GO) run ./hack/bench

# stack-proof installs every built-in profile's stack components whose
# chart at the pinned version is published in a Go module (or is kaic's
# own) from that upstream chart, with kaic's installer, into the real
# control plane with kwok nodes, and requires each to be ready; it prints
# one line per profile and component, proven or not provable here with the
# reason, and fails on any failure. Needs the testbin binaries and the Go
# module proxy; under a minute with both cached.
stack-proof: testbin
	KAIC_TESTBIN_DIR="$$(KAIC_TESTBIN_QUIET=1 hack/testbin/build.sh)" $(GO) run ./hack/stackproof

# bench-kind measures kaic on real kind clusters of the offline node image
# (Docker; e2e/offline.sh builds the images and starts the private engine
# where the host's cannot run kind nodes): kind's library creating the same
# cluster, kaic provision, and kaic up of the offline profile, with each
# phase and check. Table, then one line of key=value ratios; JSON under
# bench/. About 10 minutes with the images built.
bench-kind: build
	e2e/offline.sh $(GO) run ./hack/benchkind -kaic $(BIN) -profile e2e/testdata/kind-dra-offline.yaml

# unit runs the tests without building the control plane; integration
# tests skip (outside CI) saying how to get it.
unit:
	@hack/testbin/build.sh --check >/dev/null 2>&1 || echo "note: control-plane binaries missing: integration tests skip (make testbin builds them)"
	$(GO) test $(TEST_FLAGS) ./...

lint:
	@out="$$(gofmt -l cmd pkg internal hack profiles stacks)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	@for m in $(LAB_MODULES); do echo "vet, staticcheck in $$m"; (cd $$m && $(GO) vet ./... && $(GO) run $(STATICCHECK) ./...) || exit 1; done

fmt:
	gofmt -w cmd pkg internal hack profiles stacks

# fuzz runs the profile loader's fuzz test for real (FUZZTIME, default 3m).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzLoadBytes$$' -fuzztime $(FUZZTIME) ./pkg/profile/

# e2e runs kaic up against a real kind cluster (needs Docker and the images
# a profile pulls; see the e2e workflow).
e2e: build
	$(GO) test -tags e2e -timeout 90m -v ./e2e/...

# e2e-offline runs the e2e suite against a kind cluster made only of images
# built on this machine (hack/kindnode, no registry): it builds what is
# missing, starts a private Docker engine where the host's cannot run kind
# nodes, and tears everything down again. See e2e/offline.sh.
e2e-offline: build
	e2e/offline.sh

clean:
	rm -rf bin
