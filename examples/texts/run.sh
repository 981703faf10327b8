#!/usr/bin/env bash
# From a CSV of texts to a described map, no code: embed -> fit -> classify -> project -> report.
#
#   examples/texts/run.sh WORKDIR [TEXTS.csv]
#
# texts.csv (beside this script) holds 270 short texts written for streamproc on six topics
# (cooking, football, astronomy, finance, gardening, software); its `topic` column is not used
# by the pipeline, only by the test that checks the clusters against it.
# Needs the text extra, from a checkout: a CPU torch (README, "Two commands"), then pip install '.[text]'
set -euo pipefail
work=$1
here=$(cd "$(dirname "$0")" && pwd)
texts=${2:-$here/texts.csv}
mkdir -p "$work"

streamproc embed "$work/store" "$texts" --text-column text --id-column id --json > "$work/embed.json"
# cosine k-means: sentence embeddings are compared by angle; k by silhouette (exact on 270 rows: Davies-Bouldin
# is nearly tied between k = 6 and 7 here)
streamproc fit "$work/store" --k 3:10 --metric cosine --select silhouette --json > "$work/fit.json"
streamproc classify "$work/store" --json > "$work/classify.json"
streamproc export "$work/store" -o "$work/labels.csv" --json > "$work/export.json"
streamproc project "$work/store" --json > "$work/project.json"
streamproc report "$work/store" -o "$work/report.html" --json > "$work/report.json"
echo "report: $work/report.html"
