#!/usr/bin/env bash
# Three nights of deletions on a real deployment, as an operator runs them:
#   unlearn init, then per night N subject requests + `unlearn nightly`, then versions/audit.
# Usage: DATASET=fashion-mnist SUBJECTS=20 NIGHTS=3 WORKERS=2 OUT=out/nightly-fm benchmarks/scripts/nightly_nights.sh
set -euo pipefail
DATASET=${DATASET:-fashion-mnist}; SUBJECTS=${SUBJECTS:-20}; NIGHTS=${NIGHTS:-3}; WORKERS=${WORKERS:-2}
OUT=${OUT:-out/nightly-$DATASET}; BIN=${BIN:-.venv/bin}
export UNLEARN_HOME=$OUT/home RAY_USAGE_STATS_ENABLED=0 MLFLOW_DISABLE_TELEMETRY=true
mkdir -p "$OUT"
t() { local s=$SECONDS; "$@"; echo "[timing] $* : $((SECONDS - s)) s"; }
[ -e "$UNLEARN_HOME/home.json" ] || t $BIN/unlearn init --dataset "$DATASET" --workers 1
for night in $(seq 1 "$NIGHTS"); do
  # SUBJECTS people ask to be forgotten today (spread over the store, different each night)
  $BIN/python - "$DATASET" "$SUBJECTS" "$night" <<'PY' | while read -r s; do $BIN/unlearn request add --subject "$s" --reason "nightly benchmark" >/dev/null; done
import sys, numpy as np, pyarrow.parquet as pq, os
ds, n, night = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
subj = np.unique(pq.read_table(os.path.join(os.environ["UNLEARN_HOME"], "datasets", ds, "train.parquet"), columns=["subject_id"]).column(0).to_numpy(zero_copy_only=False))
for s in np.random.default_rng(night).choice(subj, n, replace=False): print(s)
PY
  t $BIN/unlearn nightly --workers "$WORKERS" || echo "[nightly exit $?]"
done
$BIN/unlearn versions
$BIN/unlearn request list --status purged | tail -n 3
