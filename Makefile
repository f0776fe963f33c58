# The two commands a newcomer needs: `make test` and `make demo`.
# Both create/refresh .venv first. torch is pinned to the CPU wheel on purpose: a bare
# "torch" requirement on a fresh machine pulls a multi-GB CUDA build.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export RAY_USAGE_STATS_ENABLED := 0
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true

.PHONY: venv test test-fast configs demo demo-bench bench-fashion tune-fashion bench-ray-overhead bench-ray-workers gpu-check clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# Everything: unit, integration (one shared local Ray), end to end. CI runs this.
test: venv
	$(BIN)/python -m pytest -q --durations=15

# The inner loop: unit tests (no Ray), every CLI user error in-process, the layer and
# config checks. Under a minute here.
test-fast: venv
	$(BIN)/python -m pytest -q -m "not integration and not e2e and not slow"

# The JSON Schemas of the YAML configs and pipeline/configs/nightly.yaml, regenerated
# from the pydantic models (their one home). The unit tests fail while one is stale.
configs: venv
	$(BIN)/python -m jobs.schemas

# The whole story: init, serve, deletions over HTTP, nightly, swap, purge (Fashion-MNIST
# when installed, else digits). DEMO_ARGS=--dataset digits for the fastest.
demo: venv
	$(BIN)/unlearn demo $(DEMO_ARGS)

# Every method on digits against the retrain oracle (< 2 min).
demo-bench: venv
	$(BIN)/unlearn bench --dataset digits --forget random:0.1 --methods all --out out/demo-digits
	@echo "see out/demo-digits/report.md and the plots beside it"

# The headline benchmark, as measured for the README: both scenarios side by side, one
# thread each (50 minutes on 2 cores with cached original/retrain models, 70-90 from an empty cache).
bench-fashion: venv
	OMP_NUM_THREADS=1 $(BIN)/unlearn bench --dataset fashion-mnist --forget random:0.1 --methods all --seeds 0,1,2 --out out/fm-random & \
	OMP_NUM_THREADS=1 $(BIN)/unlearn bench --dataset fashion-mnist --forget class:3 --methods all --seeds 0,1,2 --out out/fm-class3; \
	wait

# How the shipped configs were tuned: full size (5k of train held out for validation), two
# rounds of 12 points per method, one process per method. Minutes on one GPU
# (DEVICE=cuda, as measured); hours on this 2-core CPU.
DEVICE ?= cuda
tune-fashion: venv
	DEVICE=$(DEVICE) PY=$(BIN)/python OUT=out/tune-round1 benchmarks/scripts/tune_parallel.sh
	DEVICE=$(DEVICE) PY=$(BIN)/python OUT=out/tune-round2 CONFIG=out/tune-round1/config.yaml \
	  GRID=pipeline/configs/fashion-mnist-grid-round2.yaml benchmarks/scripts/tune_parallel.sh

# Ray Train's overhead over the plain loop (steady samples/s, start-up apart), side by side.
bench-ray-overhead: venv
	$(BIN)/python benchmarks/scripts/ray_overhead.py --dataset fashion-mnist --method lur --repeats 2

# The same benchmark on 1 and 2 Ray workers (class forgetting: its metrics are stable
# under batch order, so a 1-vs-2 difference means something; see README).
bench-ray-workers: venv
	$(BIN)/unlearn bench --dataset fashion-mnist --forget class:3 --methods lur,random_label --engine ray --workers 1 --seeds 0,1,2 --out out/fm-class-ray1
	$(BIN)/unlearn bench --dataset fashion-mnist --forget class:3 --methods lur,random_label --engine ray --workers 2 --seeds 0,1,2 --out out/fm-class-ray2

# ResNet-18 on synthetic CIFAR-shaped data on a GPU machine (1 and N workers when Ray is there).
gpu-check:
	python3 benchmarks/scripts/gpu_check.py

clean:
	rm -rf $(VENV) out .unlearn .unlearn-demo
