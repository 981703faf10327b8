#!/usr/bin/env bash
# What cron runs every few minutes: ingest whatever landed in the inbox, then label the new rows.
#
#   */5 * * * *  /path/to/label-inbox.sh /data/store /data/inbox [/data/ingested] >> /data/label-inbox.log 2>&1
#
# Files younger than 60 s may still be being written, so they wait for the next run (--min-age).
# Each file is moved out of the inbox (into INBOX/ingested/ by default) once its batch has
# committed, so every run lists and hashes only new files; a file that fails stays in the inbox.
# Exit 75 means another run holds the store: nothing is lost, the next run picks the work up.
set -u
store=$1
inbox=$2
ingested=${3:-$inbox/ingested}
min_age=${MIN_AGE:-60}

streamproc ingest "$store" "$inbox" --min-age "$min_age" --move-to "$ingested" --json
code=$?
if [ "$code" -eq 75 ]; then echo "store busy; next run will ingest" >&2; exit 0; fi
if [ "$code" -ne 0 ]; then echo "some files failed to ingest (see above); labelling the rest" >&2; fi

streamproc classify "$store" --json
code=$?
if [ "$code" -eq 75 ]; then echo "store busy; next run will label" >&2; exit 0; fi
exit "$code"
