# Shared by the deploy/testnet suites (sourced): checks, the probe for namespaces, and the
# calls the suites make on the network in DIR (set `dir` and the sockets before use).
src=${MP_SOURCE_ROOT:?MP_SOURCE_ROOT is not set}
export MP_BUILD=${MP_BUILD:?MP_BUILD is not set}
testnet=$src/deploy/testnet
mpctl() { "$MP_BUILD/tools/mpctl" "$@"; }
get() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
expect() { # WHAT ACTUAL WANTED
	[ "$2" = "$3" ] || fail "$1: $2, expected $3"
	echo "ok: $1 = $3"
}

# Exit 77 (skipped, with the reason) where network namespaces cannot be created.
testnet_probe() {
	if [ "$(id -u)" != 0 ] || ! ip netns add "mpprobe$$" 2>/dev/null; then
		echo "SKIP: network namespaces cannot be created here (needs root and iproute2)"
		exit 77
	fi
	ip netns del "mpprobe$$"
}

pending() { # MERCHANT_ID: its pending credit at the broker
	mpctl -s "$B" account.show account="$1" | python3 -c '
import json, sys
print(sum(r["balance"] for r in json.load(sys.stdin)["related"] if r["kind"] == "merchant_pending"))'
}
order() { mpctl -s "$1" order.create price="$2" | get order_ref; }

# Time past settlement on every host, then the broker's sweep.
advance_past_settlement() {
	for h in broker m1 m2 m3 w1 w2; do
		mpctl -s "$dir/$h/admin.sock" clock.advance seconds=$((4 * 86400 + 3600)) >/dev/null
	done
	mpctl -s "$B" sweep.run >/dev/null
}

# `testnet down` removes every namespace of the network; no secret of the run is in a log.
down_and_check_logs() {
	"$testnet" down "$dir"
	[ ! -f "$dir/testnet" ] || fail "testnet down left its record"
	if ip netns list | grep -q "^mp$(printf '%s' "$dir" | sha256sum | cut -c1-6)-"; then
		fail "namespaces left behind"
	fi
	echo "ok: testnet down removed every namespace"
	# Read once the daemons stopped: they hold their stores locked.
	python3 "$src/tests/deploy/secrets_in_logs.py" "$dir" "$dir"/*/log || fail "a secret appears in the logs"
}
