# SPDX-License-Identifier: MIT
# Top-level Makefile: dispatches to one directory per deliverable; everything lands in build/.
SUBDIRS := common bpf router shim supervise ctl cni lab tests

.PHONY: all deps $(SUBDIRS) check unit integration demo bench clean

all: $(SUBDIRS)

deps:
	@bash scripts/deps

common:
	$(MAKE) -C common
bpf: common
	$(MAKE) -C bpf
router: common bpf
	$(MAKE) -C router
shim: common
	$(MAKE) -C shim
supervise: common
	$(MAKE) -C supervise
ctl: common
	$(MAKE) -C ctl
cni: common
	$(MAKE) -C cni
lab:
	$(MAKE) -C lab
tests: common shim bpf
	$(MAKE) -C tests

# make check: install deps, build, run unit and integration tests, print "N passed, N failed".
check: deps
	$(MAKE) all
	bash tests/run $(TESTS)

unit: all
	bash tests/run --unit

integration: all
	bash tests/run --integration $(TESTS)

demo: deps
	$(MAKE) all
	bash scripts/demo

bench: deps
	$(MAKE) all
	bash bench/run $(if $(QUICK),--quick)

# Services (ClusterIP): slim vs the overlay's nftables vs a kube-proxy iptables baseline,
# 1 / 1,000 / 10,000 services (bench/README.md, "Services"); results in bench/results/services/.
.PHONY: bench-services
bench-services: deps
	$(MAKE) all
	bash bench/services $(if $(QUICK),--quick)

# Hitless router upgrade: connects/s and the largest connect latency while h1's router is
# upgraded, against the same run without; results in bench/results/upgrade/.
.PHONY: bench-upgrade
bench-upgrade: deps
	$(MAKE) all
	bash bench/upgrade

# A static Go net/http client under slim-supervise vs plain over the overlay; results in
# bench/results/go/ (the supervised path against the shimmed one: bench/run's slim_sup modes).
.PHONY: bench-go
bench-go: deps
	$(MAKE) all
	bash bench/go

clean:
	rm -rf build
