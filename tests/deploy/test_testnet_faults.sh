#!/usr/bin/env bash
# deploy/testnet with delay, loss and cuts on the links (the fault-injecting relay,
# tests/deploy/mprelay, forced with MP_TESTNET_FAULTS=relay so that it is what runs here even
# where the kernel has netem):
#  - the broker's link delayed 20 ms each way; m1's 80 ms out and 40 ms in with 20% of chunks
#    lost (each stalled 200 ms and more, as TCP's retransmission would); m2's 40 ms with 20% lost;
#    w1's connections cut (reset) at 15% of their chunks;
#  - payments at m1 from w1, m1's redemption, a handoff m1 -> m2 paid from w1, m2's redemption,
#    every order retried until paid (a cut Pay stays in flight in the wallet and is resent
#    verbatim);
#  - the relays did lose and cut (their counters), and every daemon is still up;
#  - after settlement: every order is paid, the merchants' credit is exactly what the wallet
#    spent (its last index), credit + refund is the channel's face value, the audit is clean;
#  - `testnet clear` takes a relay off a link and the host is reached directly again.
# Skipped (exit 77, with the reason) where network namespaces cannot be created.
set -euo pipefail
. "$(dirname "$0")/testnet_lib.sh"
testnet_probe

dir=$(mktemp -d /tmp/mptestnet.XXXXXX)
trap '"$testnet" down "$dir" || true; rm -rf "$dir"' EXIT
MP_TEST_CLOCK=1 MP_BROKER_TIMEOUT=5 MP_REDEEM_RETRY_MAX=2 "$testnet" up "$dir"
B=$dir/broker/admin.sock M1=$dir/m1/admin.sock M2=$dir/m2/admin.sock W=$dir/w1/admin.sock
mid1=$(cat "$dir/m1/merchant_id") mid2=$(cat "$dir/m2/merchant_id")
ep1=$(cat "$dir/m1/endpoint") ep2=$(cat "$dir/m2/endpoint")

export MP_TESTNET_FAULTS=relay
if ip netns exec "$(cat "$dir/testnet")-w2" tc qdisc add dev lo root netem delay 1ms 2>/dev/null; then
	echo "note: this kernel has netem; the relay is forced (MP_TESTNET_FAULTS=relay)"
else
	echo "note: this kernel has no netem qdisc; delay and loss go through the relay"
fi
fault() { # testnet fault command; its report must name the relay
	local out
	out=$("$testnet" "$1" "$dir" "${@:2}")
	echo "$out"
	case $out in *"relay (tests/deploy/mprelay"*) ;; *) fail "not applied by the relay: $out" ;; esac
}
fault delay broker 20
fault delay m1 80 40
fault loss m1 20
fault delay m2 40
fault loss m2 20

account=$(mpctl -s "$W" register | get account_id)
mpctl -s "$B" account.fund account="$account" amount=1000 fund_id="$(openssl rand -hex 16)" >/dev/null
ch=$(mpctl -s "$W" issue merchant_id="$mid1" n=100 unit_value=1 days=1 | get channel_id)
fault cut w1 15

orders=()
pay_until_paid() { # MERCHANT_SOCK ENDPOINT MERCHANT_ID UNITS: one order, paid whatever it takes
	local o status tries=0
	o=$(order "$1" "$4")
	orders+=("$1 $o")
	while :; do
		tries=$((tries + 1))
		[ $tries -le 15 ] || fail "order $o at $2 not paid after 15 attempts"
		if status=$(mpctl -s "$W" pay channel_id="$ch" merchant_id="$3" endpoint="$2" units="$4" \
			order_ref="$o" 2>"$dir/pay.err" | get status); then
			echo "ok: order $o ($4 units at $2) answered $status after $tries attempt(s)"
			return
		fi
		echo "   attempt $tries at $2: $(cat "$dir/pay.err")"
		sleep 0.5
	done
}
redeem_until_credited() { # MERCHANT_SOCK MERCHANT_ID: redeemed by commands and retries
	for _ in $(seq 1 40); do
		mpctl -s "$1" redeem >/dev/null 2>&1 || true
		mpctl -s "$1" channels | python3 -c '
import json, sys
sys.exit(0 if all(c["redeemed_end"] >= c["last"] for c in json.load(sys.stdin)["channels"]) else 1)' &&
			[ "$(pending "$2")" != 0 ] && return
		sleep 0.5
	done
	fail "m-$2 did not redeem its credit across the faulty links"
}

for _ in 1 2 3; do pay_until_paid "$M1" "$ep1" "$mid1" 3; done
redeem_until_credited "$M1" "$mid1"
echo "ok: m1 redeemed $(pending "$mid1") across its delayed, lossy link"
for _ in 1 2; do pay_until_paid "$M2" "$ep2" "$mid2" 4; done
redeem_until_credited "$M2" "$mid2"
echo "ok: m2 redeemed $(pending "$mid2") after the handoff"

stats() { # HOST: the relay's totals line
	kill -USR1 "$(cat "$dir/$1/relay.pid")"
	sleep 0.3
	grep "totals:" "$dir/$1/relay.log" | tail -1
}
for h in broker m1 m2 w1; do echo "relay $h: $(stats "$h")"; done
lost=$(stats m1 | sed -E 's/.*out [0-9]+ bytes in [0-9]+ chunks, ([0-9]+) lost.*in [0-9]+ bytes in [0-9]+ chunks, ([0-9]+) lost.*/\1 \2/')
[ "$(echo "$lost" | awk '{print $1 + $2}')" -gt 0 ] || fail "m1's relay lost nothing: $lost"
echo "ok: m1's relay lost chunks (out, in): $lost"
cuts=$(stats w1 | sed -E 's/.*out [0-9]+ bytes in [0-9]+ chunks, [0-9]+ lost, ([0-9]+) cuts.*/\1/')
[ "$cuts" -gt 0 ] || fail "w1's relay cut no connection"
echo "ok: w1's relay cut $cuts connection(s)"
for h in broker m1 m2 w1 w2; do
	mpctl -s "$dir/$h/admin.sock" status >/dev/null || fail "$h's daemon stopped answering"
done

"$testnet" clear "$dir" w1
for o in "${orders[@]}"; do
	set -- $o
	expect "order $2 paid" "$(mpctl -s "$1" order.show order_ref="$2" | get paid)" True
done
spent=$(mpctl -s "$W" channels | python3 -c '
import json, sys
c = [c for c in json.load(sys.stdin)["channels"] if c["channel_id"] == sys.argv[1]][0]
assert c["inflight"] == 0, c
print(c["last"])' "$ch")
echo "the wallet spent $spent units on 5 orders of 17 units (retried Pays may pay a little more)"
[ "$spent" -ge 17 ] || fail "the wallet spent $spent units, less than the 17 its orders cost"

advance_past_settlement
expect "channel state" "$(mpctl -s "$B" channel.settlement channel="$ch" | get state)" FINALIZED
refund=$(mpctl -s "$W" refund channel_id="$ch" | get refund)
c1=$(mpctl -s "$B" account.show account="$mid1" | get balance)
c2=$(mpctl -s "$B" account.show account="$mid2" | get balance)
expect "the merchants' credit, m1 $c1 + m2 $c2" "$((c1 + c2))" "$spent"
expect "credit + the customer's refund $refund" "$((c1 + c2 + refund))" 100
expect "the customer's balance" "$(mpctl -s "$B" account.show account="$account" | get balance)" \
	$((900 + refund))
expect "audit clean" "$(mpctl -s "$B" audit | get ok)" True

"$testnet" clear "$dir" m1
[ ! -e "$dir/m1/relay.pid" ] || fail "testnet clear left m1's relay running"
ip netns list | grep -q "^$(cat "$dir/testnet")-rm1" && fail "testnet clear left m1's relay namespace"
ip netns exec "$(cat "$dir/testnet")-w2" bash -c 'exec 3<>/dev/tcp/10.77.0.11/7100' ||
	fail "m1 cannot be reached directly after its relay was removed"
echo "ok: testnet clear took the relay off m1's link; m1 is reached directly"
down_and_check_logs
