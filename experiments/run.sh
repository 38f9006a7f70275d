#!/usr/bin/env bash
# Reproduces the paper's figures: runs the drivers, writes
# experiments/results/<fig>.csv and renders experiments/figures/<fig>.png.
#
#   experiments/run.sh fig7a|fig7b|fig7c|fig8a|fig8b|fig8c|all [--paper] [--quick] [--with-peers]
#   experiments/run.sh recovery|maxrate|cost [--quick] [--with-peers]
#
# fig7a and fig7b are the stateful serverless application (apps/hotel):
# exoflow against the Beldi baseline on one SQLite database, the paper's
# request mix at rising rates (7a) and reservations at 5/s (7b); see
# experiments/fig7.py.
# cost is the batch comparison of §5.3 (CSV only): the whole batch run
# of exoflow (reference, timely 1 and 2 workers) and, --with-peers, PySpark
# local[2] on the same R-MAT scale 20 edge file, its table checked against
# ours. recovery and maxrate are the streaming job's benchmarks (CSV only):
# the time from `resume` to the next committed epoch after a SIGKILL at
# epoch 100 and 119 (snapshots every 20, scale 20), and the highest rate
# that 10 s epochs sustain over an R-MAT scale 22 stream.
#
# --with-peers also measures the peers in the same run, in their own virtual
# environment (experiments/.venv-peers, from peers/requirements.txt): Ray
# Workflows for Fig 8a, 8b and 8c, PySpark local[2] for `cost`. A peer is
# plotted only when measured in that run.
# --paper runs the paper's sizes (fig7c: 10 s epochs, 350 epochs, a batch
# every 20 from 160); --quick a smoke run of a few epochs.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
exp=$root/experiments
mkdir -p "$exp/results" "$exp/figures" "$exp/work"

what=${1:-}
shift || true
paper=0 quick=0 peers=0
for a in "$@"; do
  case $a in
    --paper) paper=1 ;;
    --quick) quick=1 ;;
    --with-peers) peers=1 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done

step() { printf '\n=== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

venv() {
  if [ ! -x "$exp/.venv/bin/python" ] || ! "$exp/.venv/bin/python" -c "import matplotlib" 2>/dev/null; then
    step "plotting environment (experiments/.venv)"
    python3 -m venv "$exp/.venv"
    "$exp/.venv/bin/pip" install --quiet -r "$exp/requirements.txt"
  fi
}

build() {
  step "building exoflow (release)"
  cargo build --release --quiet
  EXOFLOW=$root/target/release/exoflow
}

fig7ab() {
  step "building exoflow-hotel (release)"
  cargo build --release --quiet -p exoflow-hotel
  local q=""
  [ "$quick" = 1 ] && q=--quick
  local which=${1#fig7}
  step "$1: exoflow and Beldi, one after the other"
  "$exp/.venv/bin/python" "$exp/fig7.py" "$which" "$root/target/release/exoflow-hotel" \
    "$exp/work/$1" "$exp/results/$1.csv" "$exp/figures/$1.png" $q
}

fig7c() {
  # An R-MAT scale S base graph (its first 16 x 2^S draws, epoch 1, read at
  # full speed), then the same R-MAT's next draws at the paper's rate (about
  # 45,000 edges/s) in time-cut epochs; the three checkpoint modes on the
  # same stream, batch recomputations beside.
  local epochs=100 epoch_ms=1000 every=20 from=40 rate=45000 scale=20
  if [ "$paper" = 1 ]; then epochs=350 epoch_ms=10000 from=160; fi
  if [ "$quick" = 1 ]; then epochs=8 epoch_ms=500 every=3 from=3 scale=16; fi
  local base=$(( 16 << scale ))
  # Edge factor: the base's 16 and enough draws for the stream after it.
  local ef=$(( 16 + epochs * epoch_ms / 1000 * rate / (1 << scale) + 2 ))
  local src="gen:rmat?scale=${scale}&edge-factor=${ef}&seed=1"
  for mode in none async sync; do
    step "fig7c: $mode, a scale-$scale base graph, then $epochs epochs of ${epoch_ms} ms at $rate edges/s"
    rm -rf "$exp/work/fig7c-$mode"
    EXOFLOW_LOG=error "$EXOFLOW" run --source "$src" --base-edges "$base" --rate "$rate" \
      --epoch-ms "$epoch_ms" --epochs "$((epochs + 1))" --checkpoint "$mode" \
      --batch-every "$every" --batch-from "$from" \
      --snapshot-every 20 --store "$exp/work/fig7c-$mode" --workflow-id "fig7c-$mode" 2>&1 \
      | awk -v m="$mode" '/^epoch|^batch/ { n++; if (n % 10 == 0) print m ": " $0; fflush() }'
  done
  step "fig7c: results/fig7c.csv, figures/fig7c.png"
  "$exp/.venv/bin/python" "$exp/fig7c.py" "$exp/work" "$exp/results/fig7c.csv" "$exp/figures/fig7c.png" --base
}

criterion_fig() {
  # The engine's criterion benches measure Fig 8a and 8c; the figure is
  # made from their medians.
  local fig=$1
  step "$fig: cargo bench --bench engine -- $fig"
  rm -rf "$root/target/criterion/$fig"
  cargo bench --quiet --bench engine -- "$fig" 2>&1 | grep -E "^$fig/|time:|thrpt:|not measured" || true
  local peer=()
  if [ "$peers" = 1 ]; then
    peers_venv
    step "$fig: Ray Workflows 2.47.1 on the same work"
    local n=()
    case $fig in
      fig8c) n=(200 4 3); [ "$quick" = 1 ] && n=(20 1 1) ;;
      *) n=(5); [ "$quick" = 1 ] && n=(1) ;;
    esac
    rm -f "$exp/work/${fig}_ray.csv"
    "$exp/.venv-peers/bin/python" "$exp/peers/ray_$fig.py" "$exp/work/${fig}_ray.csv" "${n[@]}" 2>&1 \
      | grep -E "^ray-workflows" || true
    [ -s "$exp/work/${fig}_ray.csv" ] && peer=("$exp/work/${fig}_ray.csv")
  fi
  step "$fig: results/$fig.csv, figures/$fig.png"
  "$exp/.venv/bin/python" "$exp/criterion_fig.py" "$fig" "$root/target/criterion" \
    "$exp/results/$fig.csv" "$exp/figures/$fig.png" "${peer[@]}"
}

recovery() {
  local args=()
  [ "$quick" = 1 ] && args=(--scale 14 --epoch-edges 2000 --snapshot-every 5 --kills 10,14)
  step "recovery: kill -9 after an epoch, resume, time to the next committed epoch"
  python3 "$exp/recovery.py" "$EXOFLOW" "$exp/work" "$exp/results/recovery.csv" "${args[@]}"
}

maxrate() {
  local args=()
  [ "$quick" = 1 ] && args=(--scale 16 --epoch-ms 1000 --rates 200000,400000)
  step "maxrate: 10 s epochs over an R-MAT scale 22 stream at rising rates"
  python3 "$exp/maxrate.py" "$EXOFLOW" "$exp/work" "$exp/results/maxrate.csv" "${args[@]}"
}

cost() {
  local args=(--scale 20)
  [ "$quick" = 1 ] && args=(--scale 12 --repeats 1)
  if [ "$peers" = 1 ]; then
    peers_venv
    args+=(--peers-python "$exp/.venv-peers/bin/python")
  fi
  step "cost: batch TunkRank from scratch, exoflow beside PySpark local[2]"
  python3 "$exp/cost.py" "$EXOFLOW" "$exp/work" "$exp/results/cost.csv" "${args[@]}"
}

peers_venv() {
  if [ ! -x "$exp/.venv-peers/bin/python" ] || ! "$exp/.venv-peers/bin/python" -c "import ray, pyarrow" 2>/dev/null; then
    step "peers environment (experiments/.venv-peers)"
    python3 -m venv "$exp/.venv-peers"
    "$exp/.venv-peers/bin/pip" install --quiet -r "$exp/peers/requirements.txt"
  fi
  if ! "$exp/.venv-peers/bin/python" -c "import pyspark" 2>/dev/null; then
    "$exp/.venv-peers/bin/pip" install --quiet -r "$exp/peers/requirements.txt"
  fi
}


venv
build
case $what in
  fig7a|fig7b) fig7ab "$what" ;;
  fig7c) fig7c ;;
  fig8a|fig8b|fig8c) criterion_fig "$what" ;;
  all) fig7ab fig7a; fig7ab fig7b; fig7c; criterion_fig fig8a; criterion_fig fig8b; criterion_fig fig8c ;;
  recovery) recovery ;;
  cost) cost ;;
  maxrate) maxrate ;;
  *) echo "usage: experiments/run.sh fig7a|fig7b|fig7c|fig8a|fig8b|fig8c|all|recovery|maxrate|cost [--paper] [--quick] [--with-peers]" >&2; exit 2 ;;
esac
