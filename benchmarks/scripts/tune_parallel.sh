#!/usr/bin/env bash
# Full-size tuning, one process per (scenario, method), all at once: the way to afford
# `unlearn tune` without --subsample. On one GPU (16 cores) it takes minutes; the same
# command on CPU takes hours. Each process tunes one method on the same validation
# problem (the cached original and retrain models are trained once, under a lock);
# the winners are then merged into one config for `unlearn bench --config`.
#
#   DEVICE=cuda OUT=out/tune-full benchmarks/scripts/tune_parallel.sh
#
# Needs only the pipeline's imports (torch, numpy, pyarrow, scikit-learn, safetensors,
# pyyaml, tqdm): it runs from the source tree with PYTHONPATH, no install.
set -euo pipefail
DATASET=${DATASET:-fashion-mnist}
DEVICE=${DEVICE:-cuda}
HOLDOUT=${HOLDOUT:-5000}
SCENARIOS=${SCENARIOS:-"random:0.1 class:3"}
METHODS=${METHODS:-"lur finetune grad_ascent neggrad_plus random_label salun scrub l1_sparse"}
OUT=${OUT:-out/tune-full}
PY=${PY:-python3}
CONFIG=${CONFIG:-}   # base config (default: the shipped one for the dataset)
GRID=${GRID:-}       # grid (default: <config>-grid.yaml)
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} UNLEARN_HOME=${UNLEARN_HOME:-$PWD/.unlearn}
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
mkdir -p "$OUT"

# Ingest once before the fan-out, so no two processes write the store together.
$PY -c "from pipeline.problem import load_store; load_store('$DATASET', '$UNLEARN_HOME')"

start=$SECONDS
pids=()
for spec in $SCENARIOS; do
  for m in $METHODS; do
    dir="$OUT/${spec%%:*}/$m"
    mkdir -p "$dir"
    $PY -m jobs.cli tune --dataset "$DATASET" --forget "$spec" --methods "$m" --holdout "$HOLDOUT" \
        --device "$DEVICE" --out "$dir" ${CONFIG:+--config "$CONFIG"} ${GRID:+--grid "$GRID"} >"$dir/log.txt" 2>&1 &
    pids+=($!)
  done
done
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done
echo "tuning took $((SECONDS - start)) s"
if [ $fail -ne 0 ]; then grep -l -i "error\|traceback" "$OUT"/*/*/log.txt | xargs tail -n 20; exit 1; fi

$PY - "$DATASET" "$OUT" "$CONFIG" $SCENARIOS <<'PYEOF'
import json, sys
from pathlib import Path
from jobs.bench import default_config_path
from jobs.tune import write_tuned_config
from pipeline.problem import load_method_configs

dataset, out, base, specs = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4:]
configs, merged = load_method_configs(Path(base) if base else default_config_path(dataset)), out / "config.yaml"
for spec in specs:
    tunes = [json.loads(p.read_text()) for p in sorted((out / spec.split(":")[0]).glob("*/tune.json"))]
    write_tuned_config(merged, configs, spec, *tunes)
    configs = load_method_configs(merged)
    for t in tunes:
        for m, b in t["methods"].items():
            print(f"{spec:12s} {m:13s} val gap {b['best']['gap']:5.2f}  {b['best']['config']}")
print(f"wrote {merged}")
PYEOF
