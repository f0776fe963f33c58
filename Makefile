# The two commands a newcomer needs: `make test` and `make demo`.
# Both create/refresh .venv first. torch is pinned to the CPU wheel on purpose: a bare
# "torch" requirement on a fresh machine pulls a multi-GB CUDA build.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export RAY_USAGE_STATS_ENABLED := 0
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true

.PHONY: venv test demo bench-fashion tune-fashion clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $@

test: venv
	$(BIN)/python -m pytest -q

# Until the end-to-end demo exists, the demo is the digits benchmark (every method, < 2 min).
demo: venv
	$(BIN)/unlearn bench --dataset digits --forget random:0.1 --methods all --out out/demo-digits
	@echo "see out/demo-digits/report.md and the plots beside it"

# The headline benchmark, as measured for the README: both scenarios side by side, one
# thread each (about 75 minutes on 2 cores; cached original/retrain models are reused).
bench-fashion: venv
	OMP_NUM_THREADS=1 $(BIN)/unlearn bench --dataset fashion-mnist --forget random:0.1 --methods all --seeds 0,1,2 --out out/fm-random & \
	OMP_NUM_THREADS=1 $(BIN)/unlearn bench --dataset fashion-mnist --forget class:3 --methods all --seeds 0,1,2 --out out/fm-class3; \
	wait

# How the shipped configs were tuned: a 20k-sample validation problem, 3k held out.
tune-fashion: venv
	OMP_NUM_THREADS=1 $(BIN)/unlearn tune --dataset fashion-mnist --forget random:0.1 --holdout 3000 --subsample 20000 --out out/tune-random & \
	OMP_NUM_THREADS=1 $(BIN)/unlearn tune --dataset fashion-mnist --forget class:3 --holdout 3000 --subsample 20000 --out out/tune-class; \
	wait

clean:
	rm -rf $(VENV) out .unlearn
