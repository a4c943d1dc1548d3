# Thin wrapper around CMake and CTest. `make test` alone sets up a fresh Debian 12 machine and runs every test.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo
CTEST_FLAGS ?= --output-on-failure -j $(JOBS)

.PHONY: all setup setup-build configure build test test-fresh sanitize soak amalgamate static images demo demo-two-hosts bench clean

all: build

setup:            ## install every Debian package the build and the tests need (only what is missing)
	tools/install-deps.sh test

setup-build:
	tools/install-deps.sh build

configure: setup-build
	cmake -G Ninja -S . -B $(BUILD) $(CMAKE_FLAGS)

build: configure  ## the three programs (the tests build in make test)
	cmake --build $(BUILD) -j $(JOBS) --target simple-amb docker-register dynamic-etcd-amb

# The tests build with TLS on (OpenSSL from `make setup`), so the https:// etcd tests run too; `make`,
# `make static` and the images stay without OpenSSL. tools/test.sh runs the phases and prints their times.
test: setup       ## set up, then every test: GCC (warnings as errors), Clang + ASan/UBSan on the single header, TSan; the times at the end
	BUILD=$(BUILD) JOBS=$(JOBS) tools/test.sh

sanitize: setup   ## make test's sanitize phase alone, with the fault tests too (Clang, ASan+UBSan, in build-sanitize)
	AMB_SANITIZE_FAULT=1 JOBS=$(JOBS) tools/test.sh sanitize

soak: setup       ## the long runs make test bounds: the fault tests at full length (AMB_SOAK=1), every fuzzer for 60 s
	cmake -G Ninja -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Debug -DAMB_TLS=ON -DAMB_WERROR=ON
	cmake --build $(BUILD) -j $(JOBS) --target amb_fault_tests
	AMB_SOAK=1 ctest --test-dir $(BUILD) --output-on-failure -L '^fault$$'
	fuzz/run_fuzzers.sh 60

test-fresh:       ## in a clean debian:bookworm container, tools/install-deps.sh alone sets up the build; the unit tests pass
	tools/install-deps.sh images
	tools/fresh-machine-test.sh

amalgamate:       ## regenerate single_include/amb/amb.hpp from include/
	python3 tools/amalgamate.py

static: setup-build ## fully static, stripped programs in build-static/examples (for FROM scratch)
	cmake -S . -B build-static -DCMAKE_BUILD_TYPE=Release -DAMB_STATIC=ON -DAMB_BUILD_TESTS=OFF
	cmake --build build-static -j $(JOBS)

images:           ## the FROM scratch images amb/simple-amb, amb/docker-register, amb/dynamic-etcd-amb (podman or docker)
	tools/install-deps.sh images
	tools/make-images.sh

demo: images      ## set up, build the images, and play CoreOS's 2014 demo with containers (etcd, redis, the three programs; DEMO_FLAGS=--keep leaves it running)
	tools/install-deps.sh demo
	tools/demo.sh $(DEMO_FLAGS)

demo-two-hosts: images ## the same demo across two hosts: host B is a network namespace joined by a veth pair (root)
	tools/install-deps.sh demo
	tools/demo.sh --two-hosts $(DEMO_FLAGS)

bench:            ## set up, build Release programs, and print the side-by-side benchmark (bench/README.md; BENCH_FLAGS=--quick)
	tools/install-deps.sh bench
	cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DAMB_BUILD_TESTS=OFF
	cmake --build build-bench -j $(JOBS) --target simple-amb dynamic-etcd-amb docker-register
	python3 bench/run_bench.py $(BENCH_FLAGS)

clean:
	rm -rf $(BUILD) build-static build-sanitize build-tsan build-clang build-bench
