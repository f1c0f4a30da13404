#!/usr/bin/env bash
# pg-waits.sh samples what the PostgreSQL backends of a running benchmark are
# doing, every INTERVAL seconds (default 0.05), until the cluster goes away:
# one line per active backend, "time|wait type|wait event|backend type|query".
# It attaches to the newest private cluster `holdfast-lab bench` started (its
# socket is under /tmp/holdfast-bench-*/postgres), or to the socket
# directory given as the first argument. Start it beside a benchmark to see
# what the database waited on when a run stalled:
#   scripts/pg-waits.sh > waits.log & bin/holdfast-lab bench transfers; kill %1
# and summarise with: awk -F'|' '{print $2":"$3}' waits.log | sort | uniq -c | sort -rn
set -euo pipefail

interval="${INTERVAL:-0.05}"
dir="${1:-}"
sock=""
while [ -z "$sock" ]; do
	if [ -z "${1:-}" ]; then
		dir=$(ls -dt /tmp/holdfast-bench-*/postgres 2>/dev/null | head -1 || true)
	fi
	sock=$(ls "$dir"/.s.PGSQL.* 2>/dev/null | grep -v '\.lock$' | head -1 || true)
	[ -n "$sock" ] || sleep 0.2
done
port="${sock##*.}"
echo "pg-waits: sampling $dir (port $port) every ${interval}s" >&2
exec psql -X -q -A -t -F'|' -h "$dir" -p "$port" -U postgres -d postgres <<SQL
SELECT clock_timestamp()::time, coalesce(wait_event_type, 'CPU'), coalesce(wait_event, '-'), backend_type,
       left(regexp_replace(query, '\s+', ' ', 'g'), 60)
FROM pg_stat_activity
WHERE pid <> pg_backend_pid() AND state = 'active'
\watch $interval
SQL
