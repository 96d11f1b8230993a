# Shared by the shell suites that drive a network through mpctl (sourced): checks, and calls
# that need the broker's admin socket in B.
src=${MP_SOURCE_ROOT:?MP_SOURCE_ROOT is not set}
export MP_BUILD=${MP_BUILD:?MP_BUILD is not set}
mpctl() { "$MP_BUILD/tools/mpctl" "$@"; }
get() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
expect() { # WHAT ACTUAL WANTED
	[ "$2" = "$3" ] || fail "$1: $2, expected $3"
	echo "ok: $1 = $3"
}

pending() { # MERCHANT_ID: its pending credit at the broker
	mpctl -s "$B" account.show account="$1" | python3 -c '
import json, sys
print(sum(r["balance"] for r in json.load(sys.stdin)["related"] if r["kind"] == "merchant_pending"))'
}
order() { mpctl -s "$1" order.create price="$2" | get order_ref; }
