#!/bin/bash
# Same-run rounds of the PostgreSQL end-to-end no-op against the peers (issue 18), from the
# repository root: each round runs pg_peers.py (PgQueuer, Procrastinate; needs their venv),
# then offload "before" (a src/ tree put on PYTHONPATH) and "after" (this checkout), in an
# order that alternates between rounds, and prints one line per round.
#   benchmarks/pg_rounds.sh ROUNDS BEFORE_SRC [PEERS_PYTHON]
# e.g. mkdir -p /tmp/before && git archive main src | tar -x -C /tmp/before
#      benchmarks/pg_rounds.sh 6 /tmp/before/src /tmp/pgpeers/bin/python
set -euo pipefail
rounds=$1 before=$2 peers=${3:-/tmp/pgpeers/bin/python}
offload() {  # $1: PYTHONPATH ("" for this checkout) -> jobs/s
  PYTHONPATH=$1 .venv/bin/python benchmarks/backend_bench.py --backend postgres --runs 1 \
    --jobs 3000 --only e2e_async 2>&1 | awk '/e2e_async:/ {print $3}'
}
for i in $(seq 1 "$rounds"); do
  l0=$(cut -d' ' -f1 /proc/loadavg) t=$(date -u +%H:%M)
  p=$("$peers" benchmarks/peers/pg_peers.py --jobs 3000 --runs 1 2>&1 |
    awk -F'|' '/^\| (pgqueuer|procrastinate)/ {printf "%s:%s ", $2, $3}')
  if (( i % 2 )); then b=$(offload "$before"); a=$(offload ""); else a=$(offload ""); b=$(offload "$before"); fi
  echo "$t load $l0-$(cut -d' ' -f1 /proc/loadavg) | $p| before $b | after $a"
done
