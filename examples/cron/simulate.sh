#!/usr/bin/env bash
# Simulate a few cron rounds: batches land in an inbox, label-inbox.sh runs after each.
#
#   examples/cron/simulate.sh WORKDIR [ROUNDS] [ROWS_PER_BATCH]
set -euo pipefail
work=$1
rounds=${2:-5}
rows=${3:-5000}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$work/inbox"

# day 0: a first load, and a model fitted on it
streamproc synth "$work/inbox" --rows $((rows * 2)) --batch-rows "$rows" --dim 64 --clusters 8 --quiet >/dev/null
streamproc ingest "$work/store" "$work/inbox" --quiet >/dev/null
streamproc fit "$work/store" --k 4:12:2 --quiet >/dev/null

for round in $(seq 1 "$rounds"); do
  # a producer drops one more batch (written elsewhere, then moved in: never half a file in the inbox)
  streamproc synth "$work/incoming" --rows "$rows" --batch-rows "$rows" --dim 64 --clusters 8 \
      --first-batch $((round + 1)) --quiet >/dev/null
  mv "$work"/incoming/batch-*.npy "$work/inbox/"
  MIN_AGE=0 "$here/label-inbox.sh" "$work/store" "$work/inbox" > "$work/round-$round.json"
done
streamproc info "$work/store" --json > "$work/info.json"
