#!/usr/bin/env bash
# deploy/compose, checked three ways:
#  1. docker-compose accepts the compose file and it has the services the docs name;
#  2. the placement the containers use works, on loopback: every daemon configured by
#     `mpnet config` and run in the foreground by `mpnet exec` as the compose services do, the
#     broker on a PostgreSQL given by conninfo, every daemon listening on one address and
#     announced by a host name; the demo (deploy/demo) then passes with a clean audit, and no
#     seed, key or payword of the run appears in any daemon's log (secrets_in_logs.py);
#  3. where a Docker daemon answers, the compose network itself is built and brought up and its
#     demo service must exit 0. Where none answers, this test says so: it has not run it.
set -euo pipefail
src=${MP_SOURCE_ROOT:?MP_SOURCE_ROOT is not set}
export MP_BUILD=${MP_BUILD:?MP_BUILD is not set}
compose=$src/deploy/compose/compose.yaml
mpnet=$src/deploy/mpnet
mpctl() { "$MP_BUILD/tools/mpctl" "$@"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

# 1. The compose file.
command -v docker-compose >/dev/null || fail "docker-compose is missing: run ./deploy/install-deps"
docker-compose -f "$compose" config -q || fail "docker-compose config refuses $compose"
services=$(docker-compose -f "$compose" config --services | sort | tr '\n' ' ')
[ "$services" = "broker demo init postgres shop1 shop2 wallet1 wallet2 " ] ||
	fail "unexpected services: $services"
echo "ok: docker-compose config accepts $compose ($services)"

# 2. The same roles on loopback.
dir=$(mktemp -d /tmp/mpcompose.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	"$src/deploy/pg-cluster" stop "$dir/pg" || true
	rm -rf "$dir"
}
trap cleanup EXIT
free_port() { perl -MSocket -e 'socket(my $s, PF_INET, SOCK_STREAM, 0) or die; bind($s, pack_sockaddr_in(0, inet_aton("127.0.0.1"))) or die; print((unpack_sockaddr_in(getsockname($s)))[0], "\n")'; }
run() { # NAME: `mpnet exec` in the background, as the service's command does, until it answers
	"$mpnet" exec "$dir" "$1" >>"$dir/$1.out" 2>&1 &
	pids+=($!)
	for _ in $(seq 1 300); do
		mpctl -s "$dir/$1/admin.sock" status >/dev/null 2>&1 && return 0
		kill -0 "${pids[-1]}" 2>/dev/null || { cat "$dir/$1.out" >&2; fail "$1 died at start"; }
		sleep 0.1
	done
	fail "$1 did not answer on its admin socket"
}
conninfo=$("$src/deploy/pg-cluster" start "$dir/pg")
export MP_LISTEN_HOST=127.0.0.1 MP_ADVERTISE_HOST=localhost
MP_TEST_CLOCK=1 MP_DB_CONNINFO=$conninfo MP_PORT=$(free_port) "$mpnet" config "$dir" broker
[ -f "$dir/test-clock" ] || fail "init did not record the test clock for the other daemons"
run broker
for shop in shop1 shop2; do
	MP_PORT=$(free_port) "$mpnet" config "$dir" merchant $shop
	grep -q "^endpoint = localhost:" "$dir/$shop/config.ini" || fail "$shop is not announced by name"
	run $shop
done
for w in wallet1 wallet2; do "$mpnet" config "$dir" wallet $w; run $w; done
for shop in shop1 shop2; do
	for _ in $(seq 1 100); do
		mpctl -s "$dir/$shop/admin.sock" status | grep -q '"registered": *true' && break
		sleep 0.1
	done
done
MPCTL=$MP_BUILD/tools/mpctl MP_BROKER_SOCK=$dir/broker/admin.sock \
	MP_SHOP1_SOCK=$dir/shop1/admin.sock MP_SHOP2_SOCK=$dir/shop2/admin.sock \
	MP_SHOP1_ENDPOINT=$(cat "$dir/shop1/endpoint") MP_SHOP2_ENDPOINT=$(cat "$dir/shop2/endpoint") \
	MP_WALLET1_SOCK=$dir/wallet1/admin.sock MP_WALLET2_SOCK=$dir/wallet2/admin.sock \
	"$src/deploy/demo" >"$dir/demo.out" 2>&1 || { cat "$dir/demo.out"; fail "the demo failed"; }
grep -q "FINALIZED" "$dir/demo.out" || { cat "$dir/demo.out"; fail "the demo did not finalise"; }
mpctl -s "$dir/broker/admin.sock" audit | grep -q '"ok": *true' || fail "the audit is not clean"
echo "ok: the compose roles on loopback ran the demo to settlement; the audit is clean"
# No seed, key or payword of this run in any daemon's log or the demo's output (read once the
# daemons stopped: they hold their stores locked).
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
pids=()
python3 "$src/tests/deploy/secrets_in_logs.py" "$dir" "$dir"/*.out ||
	fail "a secret appears in the logs"

# 3. The containers themselves, where Docker is available.
if ! docker info >/dev/null 2>&1; then
	echo "NOT RUN: no Docker daemon answers here (docker info failed), so the compose network"
	echo "         was not built or brought up; only its file and its roles were checked above."
	exit 0
fi
project=mptest$$
trap 'docker-compose -f "$compose" -p $project down -v >/dev/null 2>&1 || true; cleanup' EXIT
docker-compose -f "$compose" -p $project up --build --exit-code-from demo ||
	fail "the compose network's demo failed"
echo "ok: the compose network ran its demo"
