#!/usr/bin/env bash
# Measures the otelcol-iforest distribution as a whole pipeline, on loopback,
# fed by `iforest-replay --load`.
#
#   scripts/pipeline-bench.sh throughput   # OTLP -> nop vs. OTLP -> iforest -> nop, at full speed
#   scripts/pipeline-bench.sh soak         # OTLP -> iforest -> nop at a fixed rate, RSS sampled
#   scripts/pipeline-bench.sh pipeline     # a realistic gateway at a fixed rate, with and without
#                                          # iforest: CPU time per datapoint and RSS (see below)
#
# Settings (environment):
#   SERIES=1000 BATCH=500 WORKERS=4   the load (distinct series, datapoints per request, senders)
#   DURATION=30s WARMUP=10s ROUNDS=2  throughput: measured time per run, unmeasured lead-in
#                                     (every series past iforest's warm-up), alternating rounds
#   SOAK_DURATION=10m SOAK_RATE=10000 SAMPLE_EVERY=10
#                                     soak: length, datapoints/s, RSS sample interval (s).
#                                     RSS counts as stable when the second half's maximum is
#                                     within 10% of the first half's; pick a rate at which every
#                                     series passes window_size (512) points well inside the
#                                     first half, or the filling windows look like growth
#   EXPORTER=nop                      nop, or file (JSON to /dev/null: an exporter with real
#                                     per-point work, as a pipeline with a backend has)
#   HIGHCARD=true                     iforest in its high-cardinality mode (one model per metric)
#   STORAGE=1                         soak: iforest saves its models in file_storage every
#                                     CHECKPOINT (default 1m) in $OUT/storage (emptied first);
#                                     the file's size is reported at the end
#   RATE=10000 SHAPES=mix DURATION=60s ROUNDS=3 WARMUP_POINTS=64
#                                     pipeline: the load's datapoints/s, the series' shapes
#                                     (iforest-replay --shapes), measured time per run and
#                                     alternations, and the points per series sent at full speed
#                                     before each measured run (every series past iforest's
#                                     warm-up and through two refits)
#   PIN=1                             collector on CPU 1, load tool on CPU 0 (taskset)
#   SKIP_BUILD=1                      use the existing _build/otelcol-iforest
#   COLLECTOR=path                    run this build of the distribution instead (with SKIP_BUILD=1),
#                                     e.g. a copy of an older one to compare with
#   IFOREST_BENCH_OTLP=127.0.0.1:14317 IFOREST_BENCH_METRICS_PORT=18888
#
# Throughput is what the collector accepted (otelcol_receiver_accepted_metric_points
# from its own telemetry) over the measured time; the load tool's own count of
# successful sends is printed next to it. Without a batch processor or queue
# the receiver answers only after iforest and the exporter are done, so this
# is the pipeline's sustained rate. The load tool runs on the same machine and
# competes for its CPUs: compare the two configurations, not the absolute
# numbers with other machines. Needs bash, curl, go, make.
#
# The pipeline mode runs what a gateway runs: OTLP in, the batch processor,
# an otlp_grpc exporter sending gzip-compressed batches to a second
# collector on loopback that drops them (testdata/bench/realistic-*.yaml,
# sink.yaml), fed at a fixed RATE by series of mixed shapes. Each round runs
# the configuration without iforest and the one with it (in alternating
# order from round to round), on the same load, and measures the first
# collector's CPU time (user + system, from /proc) over the measured run per
# million datapoints it accepted: CPU-s per million datapoints, which is
# also microseconds per datapoint. It prints each round, then the medians
# over the rounds of each configuration, of the per-round difference (what
# iforest adds per datapoint) and of the per-round ratio, with their range
# (min-max) as the measure of how noisy the machine was, and the
# collector's RSS at the end of each measured run.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
DIST=${COLLECTOR:-$ROOT/_build/otelcol-iforest}
LOAD=$ROOT/_build/iforest-replay
OUT=${OUT:-$ROOT/_build/bench}

SERIES=${SERIES:-1000}
BATCH=${BATCH:-500}
WORKERS=${WORKERS:-4}
DURATION=${DURATION:-30s}
WARMUP=${WARMUP:-10s}
ROUNDS=${ROUNDS:-2}
SOAK_DURATION=${SOAK_DURATION:-10m}
SOAK_RATE=${SOAK_RATE:-10000}
SAMPLE_EVERY=${SAMPLE_EVERY:-10}
export IFOREST_BENCH_EXPORTER=${EXPORTER:-nop}
export IFOREST_BENCH_HIGHCARD=${HIGHCARD:-false}
export IFOREST_BENCH_STORAGE_DIR=$OUT/storage
export IFOREST_BENCH_CHECKPOINT=${CHECKPOINT:-1m}
export IFOREST_BENCH_OTLP=${IFOREST_BENCH_OTLP:-127.0.0.1:14317}
export IFOREST_BENCH_METRICS_PORT=${IFOREST_BENCH_METRICS_PORT:-18888}
METRICS_URL=http://127.0.0.1:$IFOREST_BENCH_METRICS_PORT/metrics

COLLECTOR_CPU=()
LOAD_CPU=()
if [[ ${PIN:-0} == 1 ]]; then
  COLLECTOR_CPU=(taskset -c 1)
  LOAD_CPU=(taskset -c 0)
fi

mode=${1:-}
case $mode in
  throughput | soak | pipeline) ;;
  *)
    echo "usage: $0 throughput|soak|pipeline   (settings: see the header of $0)" >&2
    exit 2
    ;;
esac

mkdir -p "$OUT"
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  make dist
fi
go build -o "$LOAD" ./cmd/iforest-replay

# stop_pid stops a process this script started, if it still runs.
stop_pid() {
  if [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; then
    kill "$1"
    wait "$1" 2>/dev/null || true
  fi
}
COLLECTOR_PID=
stop_collector() {
  stop_pid "$COLLECTOR_PID"
  COLLECTOR_PID=
}
trap stop_collector EXIT

# start_collector CONFIG LOG: runs the distribution and waits until its
# telemetry endpoint answers (the OTLP port is waited for by the load tool).
start_collector() {
  if curl -sf -o /dev/null "$METRICS_URL"; then
    echo "something already serves $METRICS_URL; set IFOREST_BENCH_METRICS_PORT" >&2
    exit 1
  fi
  "${COLLECTOR_CPU[@]}" "$DIST" --config "$1" >"$2" 2>&1 &
  COLLECTOR_PID=$!
  for _ in $(seq 100); do
    if curl -sf -o /dev/null "$METRICS_URL"; then
      return
    fi
    if ! kill -0 "$COLLECTOR_PID" 2>/dev/null; then
      echo "collector exited; log $2:" >&2
      cat "$2" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "collector telemetry did not come up at $METRICS_URL" >&2
  exit 1
}

# accepted: datapoints the collector's receivers accepted so far.
accepted() {
  curl -sf "$METRICS_URL" | awk '/^otelcol_receiver_accepted_metric_points[{ ]/ { s += $NF } END { printf "%.0f\n", s }'
}

# cpu_seconds PID: user+system CPU time of a process so far.
cpu_seconds() {
  local tck
  tck=$(getconf CLK_TCK)
  # Fields 14 and 15 of /proc/PID/stat, counted after the command name
  # (which may contain spaces) ends with ')'.
  awk -v tck="$tck" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / tck }' "/proc/$1/stat"
}

rss_kib() {
  awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

hwm_kib() {
  awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"
}

# rss_parts PID: the anonymous (heap) and file-backed (e.g. file_storage's
# memory map) parts of the RSS, in KiB, tab-separated.
rss_parts() {
  awk '/^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 } END { printf "%d\t%d\n", a, f }' "/proc/$1/status"
}

json_field() { # json_field NAME FILE
  sed -n "s/.*\"$1\": \\([0-9.e+-]*\\).*/\\1/p" "$2"
}

load() { # load ARGS...: the load tool against the bench endpoint
  "${LOAD_CPU[@]}" "$LOAD" --load --endpoint "$IFOREST_BENCH_OTLP" --wait 30s \
    --series "$SERIES" --batch "$BATCH" --workers "$WORKERS" "$@"
}

echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) before the run"

if [[ $mode == pipeline ]]; then
  RATE=${RATE:-10000}
  SHAPES=${SHAPES:-mix}
  DURATION=${DURATION:-60s}
  ROUNDS=${ROUNDS:-3}
  WARMUP_POINTS=${WARMUP_POINTS:-64}
  export IFOREST_BENCH_SINK=${IFOREST_BENCH_SINK:-127.0.0.1:14327}
  export IFOREST_BENCH_SINK_METRICS_PORT=${IFOREST_BENCH_SINK_METRICS_PORT:-18889}
  SINK_URL=http://127.0.0.1:$IFOREST_BENCH_SINK_METRICS_PORT/metrics
  SINK_PID=
  stop_sink() {
    stop_pid "$SINK_PID"
    SINK_PID=
  }
  trap 'stop_collector; stop_sink' EXIT
  results=$OUT/pipeline.tsv
  printf 'round\tconfig\taccepted_dps\tcpu_s_per_mdp\trss_kib\thwm_kib\tsink_cpu_s_per_mdp\tload1\n' >"$results"
  for round in $(seq "$ROUNDS"); do
    order="baseline iforest"
    if ((round % 2 == 0)); then
      order="iforest baseline"
    fi
    for cfg in $order; do
      log=$OUT/pipeline-$cfg-$round.log
      if curl -sf -o /dev/null "$SINK_URL"; then
        echo "something already serves $SINK_URL; set IFOREST_BENCH_SINK_METRICS_PORT" >&2
        exit 1
      fi
      "$DIST" --config "$ROOT/testdata/bench/sink.yaml" >"$OUT/pipeline-sink-$round.log" 2>&1 &
      SINK_PID=$!
      for _ in $(seq 100); do
        if curl -sf -o /dev/null "$SINK_URL"; then
          break
        fi
        sleep 0.1
      done
      start_collector "$ROOT/testdata/bench/realistic-$cfg.yaml" "$log"
      # Every series past iforest's warm-up, at full speed.
      load --shapes "$SHAPES" --points $((SERIES * WARMUP_POINTS)) --duration 0 --quiet >/dev/null 2>>"$log"
      sleep 1 # the batch processor's last batches leave
      a0=$(accepted)
      c0=$(cpu_seconds "$COLLECTOR_PID")
      s0=$(cpu_seconds "$SINK_PID")
      # The warm-up's seed: every series keeps its level (another seed
      # would move every series at once, an anomaly on each).
      load --shapes "$SHAPES" --rate "$RATE" --duration "$DURATION" --quiet --json \
        >"$OUT/pipeline-$cfg-$round.json" 2>>"$log"
      a1=$(accepted)
      c1=$(cpu_seconds "$COLLECTOR_PID")
      s1=$(cpu_seconds "$SINK_PID")
      rss=$(rss_kib "$COLLECTOR_PID")
      hwm=$(hwm_kib "$COLLECTOR_PID")
      secs=$(json_field elapsed_seconds "$OUT/pipeline-$cfg-$round.json")
      failed=$(json_field failed_requests "$OUT/pipeline-$cfg-$round.json")
      n=$((a1 - a0))
      rate=$(awk -v a="$n" -v s="$secs" 'BEGIN { printf "%.0f", a / s }')
      cpu=$(awk -v c0="$c0" -v c1="$c1" -v a="$n" 'BEGIN { printf "%.3f", (c1 - c0) / (a / 1e6) }')
      sink=$(awk -v c0="$s0" -v c1="$s1" -v a="$n" 'BEGIN { printf "%.3f", (c1 - c0) / (a / 1e6) }')
      load1=$(cut -d' ' -f1 /proc/loadavg)
      printf 'round %d %-8s  %6d dp/s accepted (%d failed requests); collector %.3f CPU-s per million dp, RSS %.1f MiB (peak %.1f); sink %.3f CPU-s per million dp; load average %s\n' \
        "$round" "$cfg" "$rate" "$failed" "$cpu" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" "$(awk -v k="$hwm" 'BEGIN { print k / 1024 }')" "$sink" "$load1"
      printf '%d\t%s\t%d\t%s\t%d\t%d\t%s\t%s\n' "$round" "$cfg" "$rate" "$cpu" "$rss" "$hwm" "$sink" "$load1" >>"$results"
      stop_collector
      stop_sink
    done
  done
  echo "series $SERIES ($SHAPES), $RATE dp/s, batch $BATCH, workers $WORKERS, $ROUNDS x $DURATION per configuration (results in $results)"
  # Medians over the rounds, and per round the difference and the ratio.
  awk -F'\t' '
    function median(a, n,   i, j, t) {
      for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function spread(a, n,   i, lo, hi) {
      lo = a[1]; hi = a[1]
      for (i = 2; i <= n; i++) { if (a[i] < lo) lo = a[i]; if (a[i] > hi) hi = a[i] }
      return sprintf("%.3f-%.3f", lo, hi)
    }
    NR > 1 { cpu[$2, $1] = $4; rss[$2, $1] = $5; load[NR] = $8; rounds = $1 > rounds ? $1 : rounds }
    END {
      for (r = 1; r <= rounds; r++) {
        b[r] = cpu["baseline", r]; w[r] = cpu["iforest", r]
        d[r] = w[r] - b[r]; q[r] = w[r] / b[r]
        rb[r] = rss["baseline", r] / 1024; rw[r] = rss["iforest", r] / 1024
      }
      lmin = 1e9; lmax = 0
      for (i in load) { if (load[i] < lmin) lmin = load[i]; if (load[i] > lmax) lmax = load[i] }
      printf "without iforest: %.3f CPU-s per million dp (median; rounds %s)\n", median(b, rounds), spread(b, rounds)
      printf "with iforest:    %.3f CPU-s per million dp (median; rounds %s)\n", median(w, rounds), spread(w, rounds)
      printf "iforest adds:    %.3f us of collector CPU per datapoint (median of the rounds'"'"' differences; %s)\n", median(d, rounds), spread(d, rounds)
      printf "ratio:           %.2f (with / without, median of the rounds; %s)\n", median(q, rounds), spread(q, rounds)
      printf "RSS at the end:  %.1f MiB without, %.1f MiB with iforest (medians)\n", median(rb, rounds), median(rw, rounds)
      printf "load average during the runs: %.2f-%.2f (the machine has other work: compare the configurations within a round)\n", lmin, lmax
    }' "$results"
  exit 0
fi

if [[ $mode == throughput ]]; then
  declare -A sum
  sum[baseline]=0
  sum[iforest]=0
  for round in $(seq "$ROUNDS"); do
    for cfg in baseline iforest; do
      log=$OUT/$cfg-$round.log
      start_collector "$ROOT/testdata/bench/$cfg.yaml" "$log"
      load --duration "$WARMUP" --quiet >/dev/null 2>>"$log"
      a0=$(accepted)
      c0=$(cpu_seconds "$COLLECTOR_PID")
      load --duration "$DURATION" --quiet --json >"$OUT/$cfg-$round.json" 2>>"$log"
      a1=$(accepted)
      c1=$(cpu_seconds "$COLLECTOR_PID")
      secs=$(json_field elapsed_seconds "$OUT/$cfg-$round.json")
      sent=$(json_field datapoints_per_second "$OUT/$cfg-$round.json")
      failed=$(json_field failed_requests "$OUT/$cfg-$round.json")
      rate=$(awk -v a="$((a1 - a0))" -v s="$secs" 'BEGIN { printf "%.0f", a / s }')
      cpu=$(awk -v c0="$c0" -v c1="$c1" -v a="$((a1 - a0))" 'BEGIN { printf "%.2f", (c1 - c0) / (a / 1e6) }')
      printf 'round %d %-8s  %8d dp/s accepted by the collector (load tool: %.0f dp/s sent OK, %d failed requests); collector %.2f CPU-s per million dp, %s load average\n' \
        "$round" "$cfg" "$rate" "$sent" "$failed" "$cpu" "$(cut -d' ' -f1 /proc/loadavg)"
      sum[$cfg]=$((sum[$cfg] + rate))
      stop_collector
    done
  done
  base=$((sum[baseline] / ROUNDS))
  withif=$((sum[iforest] / ROUNDS))
  echo "series $SERIES, batch $BATCH, workers $WORKERS, exporter $IFOREST_BENCH_EXPORTER, high_cardinality $IFOREST_BENCH_HIGHCARD, $ROUNDS x $DURATION per configuration"
  echo "without iforest: $base dp/s"
  echo "with iforest:    $withif dp/s"
  awk -v a="$withif" -v b="$base" 'BEGIN { printf "ratio:           %.2f (target >= 0.70)\n", a / b }'
  exit 0
fi

# soak
log=$OUT/soak.log
samples=$OUT/soak-rss.tsv
soak_config=$ROOT/testdata/bench/iforest.yaml
if [[ ${STORAGE:-0} == 1 ]]; then
  soak_config=$ROOT/testdata/bench/iforest-storage.yaml
  rm -rf "$IFOREST_BENCH_STORAGE_DIR"
fi
start_collector "$soak_config" "$log"
load --rate "$SOAK_RATE" --duration "$SOAK_DURATION" --report-interval 60s --json >"$OUT/soak.json" 2>>"$log" &
load_pid=$!
start=$(date +%s)
printf 'seconds\trss_kib\taccepted\tanon_kib\tfile_kib\n' >"$samples"
echo "soak: $SERIES series at $SOAK_RATE dp/s for $SOAK_DURATION; RSS every ${SAMPLE_EVERY}s (in $samples)"
while kill -0 "$load_pid" 2>/dev/null; do
  now=$(($(date +%s) - start))
  rss=$(rss_kib "$COLLECTOR_PID")
  acc=$(accepted || echo 0)
  parts=$(rss_parts "$COLLECTOR_PID")
  printf '%d\t%d\t%d\t%s\n' "$now" "$rss" "$acc" "$parts" >>"$samples"
  printf '%5ds  RSS %6.1f MiB (anon %6.1f, file %6.1f)  accepted %d\n' "$now" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" \
    $(awk -v p="$parts" 'BEGIN { split(p, a, "\t"); print a[1] / 1024, a[2] / 1024 }') "$acc"
  sleep "$SAMPLE_EVERY"
done
wait "$load_pid" || true
grep -h 'iforest-replay --load: .*series' "$log" | tail -1
if [[ ${STORAGE:-0} == 1 ]]; then
  echo "storage: $(du -b "$IFOREST_BENCH_STORAGE_DIR"/* | awk '{ printf "%s %.1f MiB; ", $2, $1 / 1048576 }')saved every $IFOREST_BENCH_CHECKPOINT"
fi

# Stable: after the first half (every series warmed up, windows filled),
# the highest RSS of the second half is within 10% of the first half's.
awk -F'\t' 'NR > 1 { t[NR] = $1; r[NR] = $2; n = NR }
  END {
    first = r[2]; last = r[n]; max = 0; warm = r[n]
    for (i = n; i >= 2; i--) if (t[i] >= 60) warm = r[i]
    for (i = 2; i <= n; i++) if (r[i] > max) max = r[i]
    half = t[n] / 2; m1 = 0; m2 = 0
    for (i = 2; i <= n; i++) { if (t[i] <= half) { if (r[i] > m1) m1 = r[i] } else if (r[i] > m2) m2 = r[i] }
    printf "RSS first %.1f MiB (before the load), after a minute %.1f MiB, last %.1f MiB, max %.1f MiB; max of first half %.1f MiB, of second half %.1f MiB\n", first/1024, warm/1024, last/1024, max/1024, m1/1024, m2/1024
    stable = (m2 <= 1.10 * m1)
    printf "RSS stable: %s\n", stable ? "yes" : "no (second half more than 10% above the first)"
    exit stable ? 0 : 1
  }' "$samples"
