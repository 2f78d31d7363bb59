# Bulkhead's two commands (see README):
#   make run    build, start bulkheadd with the default qubes, show them with qvm-ls
#   make test   build and run every test
# Both install missing Debian packages first (scripts/deps.sh).
PREFIX ?= /usr/local
BUILD ?= build
ROOT ?= /var/lib/bulkhead
RUNTIME ?= /run/bulkhead
UPLINK ?= none

.PHONY: all deps build run stop test test-asan fuzz bench install clean

all: build

deps:
	@scripts/deps.sh

build: deps
	@[ -f $(BUILD)/build.ninja ] || meson setup $(BUILD) >/dev/null
	@ninja -C $(BUILD)

run: build
	@UPLINK="$(UPLINK)" scripts/run.sh "$(BUILD)" "$(ROOT)" "$(RUNTIME)"

stop:
	@scripts/run.sh --stop "$(BUILD)" "$(ROOT)" "$(RUNTIME)"

test:
	@scripts/test.sh "$(BUILD)"

test-asan:
	@BULKHEAD_SANITIZE=1 scripts/test.sh build-asan

fuzz:
	@scripts/fuzz.sh

bench: build
	@scripts/bench.sh "$(BUILD)"

install: build
	@meson configure $(BUILD) -Dprefix=$(abspath $(PREFIX)) >/dev/null
	@# regenerate (and rebuild what embeds the prefix) before installing: without this,
	@# install used the previous prefix (e.g. /usr/local) instead of PREFIX
	@ninja -C $(BUILD) >/dev/null
	@meson install -C $(BUILD) --no-rebuild >/dev/null
	@echo "installed under $(abspath $(PREFIX))"

clean:
	rm -rf build build-asan build-fuzz
