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

run_demo() { # NET OUT: deploy/demo against the mpnet network NET (broker, m1, m2, w1, w2), its
	# output in OUT; fails the suite (printing OUT) when the demo fails
	MPCTL=$MP_BUILD/tools/mpctl MP_BROKER_SOCK=$1/broker/admin.sock \
		MP_SHOP1_SOCK=$1/m1/admin.sock MP_SHOP2_SOCK=$1/m2/admin.sock \
		MP_SHOP1_ENDPOINT=$(cat "$1/m1/endpoint") MP_SHOP2_ENDPOINT=$(cat "$1/m2/endpoint") \
		MP_WALLET1_SOCK=$1/w1/admin.sock MP_WALLET2_SOCK=$1/w2/admin.sock \
		"$src/deploy/demo" >"$2" 2>&1 || { cat "$2"; fail "the demo failed"; }
}
