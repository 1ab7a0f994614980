# spamward: `make run` and `make test` are the two commands (README).
# Each target installs missing Debian packages first (scripts/install-deps).
JOBS ?= $(shell nproc)
BUILD_DIR ?= build
ASAN_DIR ?= build-asan
CONFIG ?= config/spamward.toml
CMAKE_FLAGS ?=

.PHONY: all deps build asan fuzz run test test-unit test-integration bench format clean

all: build

deps:
	@scripts/install-deps

build: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD_DIR) -j $(JOBS)

asan: deps
	@cmake -S . -B $(ASAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSPAMWARD_SANITIZE=ON -DSPAMWARD_UNIT_ONLY=ON >/dev/null
	@cmake --build $(ASAN_DIR) -j $(JOBS) --target unit_tests

# libFuzzer targets with clang (the second compiler); `make test` runs a short smoke pass.
FUZZ_DIR ?= build-fuzz
fuzz: deps
	@cmake -S . -B $(FUZZ_DIR) -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPAMWARD_FUZZ=ON >/dev/null
	@cmake --build $(FUZZ_DIR) -j $(JOBS)

run: build
	@mkdir -p var
	./$(BUILD_DIR)/spamward serve -c $(CONFIG)

# The whole suite: unit tests, integration tests against real servers, the unit tests
# again under ASan+UBSan, and a smoke pass of every fuzz target.
test: build asan fuzz
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS)
	ctest --test-dir $(ASAN_DIR) --output-on-failure
	ctest --test-dir $(FUZZ_DIR) --output-on-failure

test-unit: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS) -L unit

test-integration: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -L integration

bench: build
	bench/run

format:
	@find src tests bench -name '*.cpp' -o -name '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR)
