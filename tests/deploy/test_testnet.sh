#!/usr/bin/env bash
# deploy/testnet: a network across namespaces (broker, three merchants, two wallets on their own
# addresses), with links cut and restored while money moves:
#  - payments across hosts; a partition between merchant m1 and the broker during redemption
#    (the redemption fails with a clear error and credits nothing; after heal its own retry
#    credits all);
#  - a partition between m1 and m2 during a handoff (the wallet gets a clear error, no payword
#    leaves it; after heal the same order is paid through the handoff);
#  - a partition between m2 and the broker during m2's redemption: after heal, m2's own retry
#    delivers it;
#  - time advanced past settlement: the channel finalises, the customer's refund is exact,
#    each merchant is credited exactly what it was paid, and the audit is clean;
#  - no seed, key or payword of the run appears in any daemon's log.
# Skipped (exit 77, with the reason) where network namespaces cannot be created.
set -euo pipefail
. "$(dirname "$0")/testnet_lib.sh"
testnet_probe

dir=$(mktemp -d /tmp/mptestnet.XXXXXX)
trap '"$testnet" down "$dir" || true; rm -rf "$dir"' EXIT
# Short broker deadlines so a cut link shows within seconds.
MP_TEST_CLOCK=1 MP_BROKER_TIMEOUT=5 MP_REDEEM_RETRY_MAX=2 "$testnet" up "$dir"
B=$dir/broker/admin.sock M1=$dir/m1/admin.sock M2=$dir/m2/admin.sock W=$dir/w1/admin.sock
mid1=$(cat "$dir/m1/merchant_id") mid2=$(cat "$dir/m2/merchant_id")
ep1=$(cat "$dir/m1/endpoint") ep2=$(cat "$dir/m2/endpoint")
expect "m1 announces its own host's address" "$ep1" "10.77.0.11:7100"

pay() { # MERCHANT_SOCK ENDPOINT MERCHANT_ID UNITS [ORDER]: one purchase, prints the status
	local o=${5:-$(order "$1" "$4")}
	mpctl -s "$W" pay channel_id="$ch" merchant_id="$3" endpoint="$2" units="$4" order_ref="$o" | get status
}

account=$(mpctl -s "$W" register | get account_id)
mpctl -s "$B" account.fund account="$account" amount=1000 fund_id="$(openssl rand -hex 16)" >/dev/null
ch=$(mpctl -s "$W" issue merchant_id="$mid1" n=100 unit_value=1 days=1 | get channel_id)
expect "pay 3 at m1 from w1's host" "$(pay "$M1" "$ep1" "$mid1" 3)" OK
expect "pay 3 more at m1" "$(pay "$M1" "$ep1" "$mid1" 3)" OK

"$testnet" partition "$dir" m1
if mpctl -s "$M1" redeem >"$dir/redeem.out" 2>&1; then fail "m1 redeemed across a cut link: $(cat "$dir/redeem.out")"; fi
echo "ok: m1's redemption while cut off fails: $(cat "$dir/redeem.out")"
expect "m1's pending credit while cut off" "$(pending "$mid1")" 0
"$testnet" heal "$dir" m1
# Right after heal the broker link may still be in its reconnect backoff (a redeem then fails
# "broker unreachable"): m1 retries the Redeem it could not deliver on its own.
for _ in $(seq 1 600); do [ "$(pending "$mid1")" = 6 ] && break; sleep 0.1; done
expect "m1's pending credit after heal, redeemed by m1's own retry" "$(pending "$mid1")" 6

o=$(order "$M2" 4)
"$testnet" partition "$dir" m1
if mpctl -s "$W" pay channel_id="$ch" merchant_id="$mid2" endpoint="$ep2" units=4 order_ref="$o" \
	>"$dir/pay.out" 2>&1; then
	fail "a handoff from a cut-off holder succeeded: $(cat "$dir/pay.out")"
fi
grep -q "no payword sent" "$dir/pay.out" || fail "unclear handoff error: $(cat "$dir/pay.out")"
echo "ok: pay at m2 while m1 is cut off: $(cat "$dir/pay.out")"
"$testnet" heal "$dir" m1
expect "the same order paid at m2 after heal (handoff m1 -> m2)" "$(pay "$M2" "$ep2" "$mid2" 4 "$o")" OK
expect "pay 4 more at m2" "$(pay "$M2" "$ep2" "$mid2" 4)" OK

"$testnet" partition "$dir" m2
if mpctl -s "$M2" redeem >/dev/null 2>&1; then fail "m2 redeemed across a cut link"; fi
expect "m2's pending credit while cut off" "$(pending "$mid2")" 0
"$testnet" heal "$dir" m2
# No second command: m2 retries the Redeem it could not deliver on its own once the link is back.
for _ in $(seq 1 600); do [ "$(pending "$mid2")" = 8 ] && break; sleep 0.1; done
expect "m2's pending credit after heal, redeemed by m2's own retry" "$(pending "$mid2")" 8

advance_past_settlement
expect "channel state" "$(mpctl -s "$B" channel.settlement channel="$ch" | get state)" FINALIZED
expect "the customer's refund" "$(mpctl -s "$W" refund channel_id="$ch" | get refund)" 86
expect "the customer's balance" "$(mpctl -s "$B" account.show account="$account" | get balance)" 986
expect "m1 available" "$(mpctl -s "$B" account.show account="$mid1" | get balance)" 6
expect "m2 available" "$(mpctl -s "$B" account.show account="$mid2" | get balance)" 8
expect "audit clean" "$(mpctl -s "$B" audit | get ok)" True

down_and_check_logs
