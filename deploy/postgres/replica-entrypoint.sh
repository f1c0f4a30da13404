#!/bin/sh
# pg-replica's entrypoint: on its first start, copy pg-primary with
# pg_basebackup (-R writes standby.signal and primary_conninfo, -C -S a
# replication slot, so the primary keeps the WAL the replica has not
# received); then run PostgreSQL as a hot standby streaming from it.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
	until pg_isready -h "$PRIMARY_HOST" -q; do sleep 1; done
	rm -rf "$PGDATA"
	PGPASSWORD="$REPLICATION_PASSWORD" pg_basebackup -h "$PRIMARY_HOST" -U replicator \
		-D "$PGDATA" -R -X stream -C -S pg_replica -P
	chmod 700 "$PGDATA"
fi
exec "$@"
