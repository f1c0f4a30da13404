#!/usr/bin/env bash
# ensure-postgres.sh makes sure the PostgreSQL server binaries (initdb,
# postgres) that internal/pglocal runs are installed. It prints nothing when
# they are: initdb is in PATH, or in /usr/lib/postgresql/*/bin (Debian,
# Ubuntu). Otherwise, on a system with apt-get, it installs the postgresql
# package, as root or through sudo; elsewhere it says what to install and
# fails.
set -euo pipefail

have_postgres() {
	command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

if have_postgres; then
	exit 0
fi

if command -v apt-get >/dev/null 2>&1; then
	sudo=""
	if [ "$(id -u)" -ne 0 ]; then
		if ! command -v sudo >/dev/null 2>&1; then
			echo "ensure-postgres: PostgreSQL is not installed; as root, run: apt-get install postgresql" >&2
			exit 1
		fi
		sudo="sudo"
	fi
	echo "ensure-postgres: installing PostgreSQL (apt-get install postgresql)" >&2
	$sudo apt-get update
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql
	if have_postgres; then
		exit 0
	fi
	echo "ensure-postgres: installed postgresql but found no initdb in PATH or /usr/lib/postgresql/*/bin" >&2
	exit 1
fi

echo "ensure-postgres: PostgreSQL server binaries (initdb, postgres) not found in PATH or /usr/lib/postgresql/*/bin;" \
	"install PostgreSQL (for example: brew install postgresql, dnf install postgresql-server) and put its bin directory in PATH" >&2
exit 1
