# kubectl-selfhost. `make help` lists the targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c

MODULE  := github.com/kubectl-selfhost/kubectl-selfhost
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X $(MODULE)/internal/version.Version=$(VERSION)
GO      ?= go
export CGO_ENABLED ?= 0

.PHONY: help build kind unit test lint demo clean images e2e
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## build bin/kubectl-selfhost and bin/pod-checkpointer
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/kubectl-selfhost ./cmd/kubectl-selfhost
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/pod-checkpointer ./cmd/pod-checkpointer

unit: ## fast tests, no Docker
	CGO_ENABLED=1 $(GO) test -race -count=1 ./cmd/... ./plugin/... ./internal/... ./manifests/... ./hack/images/envoy/... ./krew/...

test: unit e2e ## everything CI runs: unit tests, then the e2e suite on an HA kind cluster

# Every shell script, .ci/run included.
SCRIPTS := $(shell find . -name '*.sh' -not -path './.git/*' -not -path './_output/*' -not -path './bin/*' -not -path './dist/*') .ci/run

lint: ## gofmt, go vet, go.mod tidiness and shellcheck on every script
	@out=$$(gofmt -l cmd plugin internal e2e hack manifests krew 2>/dev/null); if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@$(GO) mod tidy -diff || { echo "go.mod and go.sum are not tidy: run go mod tidy"; exit 1; }
	@command -v shellcheck >/dev/null || { echo "make lint needs shellcheck: apt-get install shellcheck"; exit 1; }
	shellcheck $(SCRIPTS)

E2E_NODE_IMAGE ?= kindest/node:v1.37.2
export E2E_NODE_IMAGE
# The version TestStart boots and upgrades from (its node image is kindest/node:<it>).
E2E_UPGRADE_FROM ?= v1.36.3
export E2E_UPGRADE_FROM
# Extra go test flags for the suite, e.g. E2E_FLAGS='-run TestSmoke'.
E2E_FLAGS ?=

images: ## build every e2e image offline, skipping those whose inputs are unchanged
	@start=$$(date +%s); hack/images/build.sh; echo "make images: $$(( $$(date +%s) - start ))s"

kind: ## build bin/kind from the sigs.k8s.io/kind that go.mod pins
	$(GO) build -trimpath -o bin/kind sigs.k8s.io/kind

e2e: images build kind ## HA kind cluster from the local images, then the e2e suite (E2E_KEEP=1 keeps it)
	@hack/host-tools.sh "make e2e" chromium=chromium # opens the drill reports
	@start=$$(date +%s); rc=0; $(GO) test -count=1 -timeout 75m -v $(E2E_FLAGS) ./e2e/ || rc=$$?; \
	  echo "make e2e: suite $$(( $$(date +%s) - start ))s"; exit $$rc

demo: images build kind ## HA kind cluster -> bootstrap -> verify (the cluster stays up)
	hack/demo.sh

clean: ## remove build outputs
	rm -rf bin dist

# ---- release archives and krew (issue 7) -----------------------------------
# dist/ holds one archive per platform plus a sha256sum file; krew/selfhost.yaml
# is rendered from krew/selfhost.yaml.tmpl with the archives' real digests.
# krew, validate-krew-manifest and a test kubectl come from nested modules under
# krew/tools/ (their pins stay out of go.mod) and land in bin/krew-tools/, apart
# from bin/kubectl-selfhost so plugin discovery in the install test only sees
# the krew-installed copy.
DIST_PLATFORMS    := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64
# Every archive entry is stamped with this time (the last commit's), so two
# builds of one commit give the same bytes.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
KREW_TOOLS        := bin/krew-tools
KREW_GEN          := bin/krew-gen
KUBECTL_VERSION   := v1.37.2
KUBECTL_LDFLAGS   := -s -w $(foreach p,k8s.io/client-go/pkg/version k8s.io/component-base/version,-X $(p).gitVersion=$(KUBECTL_VERSION) -X $(p).gitMajor=1 -X $(p).gitMinor=37)

.PHONY: dist krew-manifest krew-check
$(KREW_GEN): krew/gen/main.go
	$(GO) build -trimpath -o $@ ./krew/gen

dist: $(KREW_GEN) ## cross-compile release archives + sha256sum into dist/
	rm -rf dist && mkdir -p dist/.stage
	for p in $(DIST_PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; ext=; comp=kubectl_complete-selfhost; \
	  if [ "$$os" = windows ]; then ext=.exe; comp=kubectl_complete-selfhost.cmd; fi; \
	  stage=dist/.stage/$${os}_$${arch}; \
	  echo "dist: $$os/$$arch"; \
	  GOOS=$$os GOARCH=$$arch CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $$stage/kubectl-selfhost$$ext ./cmd/kubectl-selfhost; \
	  name=$$(printf 'kubectl-selfhost_%s_%s_%s' '$(VERSION)' "$$os" "$$arch"); \
	  if [ "$$os" = windows ]; then name=$$name.zip; else name=$$name.tar.gz; fi; \
	  $(KREW_GEN) archive -o dist/$$name -mtime $(SOURCE_DATE_EPOCH) \
	    $$stage/kubectl-selfhost$$ext=kubectl-selfhost$$ext LICENSE=LICENSE krew/$$comp=$$comp; \
	done
	rm -rf dist/.stage
	$(KREW_GEN) checksums -o dist/sha256sum dist/*.tar.gz dist/*.zip
	@cat dist/sha256sum

krew-manifest: $(KREW_GEN) ## render krew/selfhost.yaml from the template and dist/ (run dist first)
	$(KREW_GEN) manifest -template krew/selfhost.yaml.tmpl -dist dist -version '$(VERSION)' \
	  -platforms '$(DIST_PLATFORMS)' -o krew/selfhost.yaml
	@echo "wrote krew/selfhost.yaml (version $(VERSION))"

# krew is built as kubectl-krew: the name kubectl's plugin discovery (and
# validate-krew-manifest, which runs `kubectl krew install`) looks for.
$(KREW_TOOLS)/kubectl-krew: krew/tools/krew/go.mod krew/tools/krew/go.sum
	cd krew/tools/krew && $(GO) build -trimpath -o ../../../$@ sigs.k8s.io/krew/cmd/krew

$(KREW_TOOLS)/validate-krew-manifest: krew/tools/krew/go.mod krew/tools/krew/go.sum
	cd krew/tools/krew && $(GO) build -trimpath -o ../../../$@ sigs.k8s.io/krew/cmd/validate-krew-manifest

$(KREW_TOOLS)/kubectl: krew/tools/kubectl/go.mod krew/tools/kubectl/go.sum krew/tools/kubectl/main.go
	cd krew/tools/kubectl && $(GO) build -trimpath -ldflags '$(KUBECTL_LDFLAGS)' -o ../../../$@ .

krew-check: dist krew-manifest $(KREW_TOOLS)/kubectl-krew $(KREW_TOOLS)/validate-krew-manifest $(KREW_TOOLS)/kubectl ## CI: dist, manifest, validate-krew-manifest, krew install/uninstall test
	krew/install-test.sh krew/selfhost.yaml dist/kubectl-selfhost_$(VERSION)_linux_amd64.tar.gz $(KREW_TOOLS)

# The tag follows images.CheckpointerVersion, so the image is the one a plain render deploys.
CHECKPOINTER_IMAGE ?= ghcr.io/kubectl-selfhost/pod-checkpointer:$(shell sed -n 's/^[[:space:]]*CheckpointerVersion = "\(.*\)"/\1/p' internal/images/images.go)
.PHONY: image
image: ## build bin/pod-checkpointer and its FROM-scratch image
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/pod-checkpointer ./cmd/pod-checkpointer
	docker build -f cmd/pod-checkpointer/Dockerfile -t $(CHECKPOINTER_IMAGE) bin
