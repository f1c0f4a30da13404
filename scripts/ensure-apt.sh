#!/usr/bin/env bash
# ensure-apt.sh COMMAND PACKAGE makes sure COMMAND is installed, installing
# the Debian PACKAGE that ships it with apt-get (as root or through sudo)
# when it is missing. It prints nothing when COMMAND is in PATH. The
# Makefile uses it for the tools of `make test` beyond Go: chromium (the
# console's browser tests) and promtool (the alert rules' tests).
set -euo pipefail

cmd=$1 pkg=$2

if command -v "$cmd" >/dev/null 2>&1; then
	exit 0
fi

if command -v apt-get >/dev/null 2>&1; then
	sudo=""
	if [ "$(id -u)" -ne 0 ]; then
		if ! command -v sudo >/dev/null 2>&1; then
			echo "ensure-apt: $cmd is not installed; as root, run: apt-get install $pkg" >&2
			exit 1
		fi
		sudo="sudo"
	fi
	echo "ensure-apt: installing $cmd (apt-get install $pkg)" >&2
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$pkg" >&2 ||
		{ $sudo apt-get update >&2 && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$pkg" >&2; }
	if command -v "$cmd" >/dev/null 2>&1; then
		exit 0
	fi
	echo "ensure-apt: installed $pkg but found no $cmd in PATH" >&2
	exit 1
fi

echo "ensure-apt: $cmd not found in PATH; install it (the $pkg package on Debian and Ubuntu) and put it in PATH" >&2
exit 1
