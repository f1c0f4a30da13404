#!/usr/bin/env bash
# ensure-nats.sh installs the nats-server binary that the external-NATS
# tests start (internal/testkit/natstest), where it can: with apt-get, as root or
# through sudo. Holdfast itself embeds its NATS server and never needs the
# binary, so this never fails: without it those tests use a server on
# 127.0.0.1:4222, or build one from the Go module into bin/tools (as the
# cluster tests always do).
set -uo pipefail

if command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]; then
	exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "ensure-nats: no nats-server and no apt-get; the external-NATS tests will build one from the Go module" >&2
	exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
	if ! command -v sudo >/dev/null 2>&1; then
		echo "ensure-nats: no nats-server; as root, run: apt-get install nats-server" >&2
		exit 0
	fi
	sudo="sudo -n"
fi
echo "ensure-nats: installing nats-server (apt-get install nats-server)" >&2
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nats-server >&2 ||
	{ $sudo apt-get update >&2 && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nats-server >&2; } ||
	echo "ensure-nats: could not install nats-server; the external-NATS tests will use 127.0.0.1:4222 or build one" >&2
exit 0
