#!/bin/sh
# Command run by `gearman -w ... -- sh cli_worker_cmd.sh OUTFILE` for each job.
# The job payload arrives on stdin; this appends "done <payload>" to OUTFILE
# and prints the reversed payload, which the gearman CLI returns as the result.
set -eu
payload=$(cat)
printf 'done %s\n' "$payload" >> "$1"
printf '%s' "$payload" | rev
