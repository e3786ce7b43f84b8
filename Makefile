# The two commands a newcomer needs: `make run` and `make test`.

WASM_TARGET := wasm32-wasip2
EXAMPLE_PLUGINS := frontdesk greeter users
PLUGINS_DIR := target/plugins
VENV := .venv
PYTHON := $(VENV)/bin/python
NODE_CLIENTS := tests/node/node_modules/.installed

.PHONY: run plugins test bench lint wasm-target python-client

## Build the example plugins and serve them on 127.0.0.1:50051, with the example config
## that grants them their capabilities (users' data is kept under data/).
run: plugins
	cargo run --release -p plugrpc -- serve --config examples/plugrpc.toml --plugins $(PLUGINS_DIR)

## Build the example plugins into target/plugins/ (profile `plugin`: release with LTO).
plugins: wasm-target
	cargo build --profile plugin --target $(WASM_TARGET) $(addprefix -p ,$(EXAMPLE_PLUGINS))
	mkdir -p $(PLUGINS_DIR)
	cp $(foreach p,$(EXAMPLE_PLUGINS),target/$(WASM_TARGET)/plugin/$(p).wasm) $(PLUGINS_DIR)/

## Run the whole test suite (Rust and the Python client against a live host).
test: wasm-target $(VENV)/.installed $(NODE_CLIENTS)
	$(PYTHON) deploy/validate.py
	PLUGRPC_PYTHON=$(abspath $(PYTHON)) cargo test --workspace --no-fail-fast

## The benchmark suite: writes BENCHMARKS.md (needs taskset; takes a few minutes).
bench: wasm-target
	cargo bench -p plugrpc-tests --bench suite

## Formatting and lints, as CI checks them.
lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

wasm-target:
	rustup target add $(WASM_TARGET)

## A virtualenv with grpcio and grpcio-tools for the Python example client, and gRPC's
## health and reflection clients for the tests.
$(VENV)/.installed: examples/clients/python/requirements.txt tests/python/requirements.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check \
		-r examples/clients/python/requirements.txt -r tests/python/requirements.txt
	touch $@

## The npm clients the tests run (buf curl), as tests/node/package-lock.json pins them.
$(NODE_CLIENTS): tests/node/package.json tests/node/package-lock.json
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

## Generate the Python stubs from proto/ (the README's client walkthrough).
python-client: $(VENV)/.installed
	mkdir -p examples/clients/python/gen
	$(PYTHON) -m grpc_tools.protoc -I proto --python_out=examples/clients/python/gen \
		--grpc_python_out=examples/clients/python/gen user/v1/user_service.proto
