#!/usr/bin/env bash
# merchantd's restore mode (merchantd/restore.h, docs/operator-guide.md "Backups and restores"),
# on a real network (deploy/mpnet: PostgreSQL, brokerd, merchants m1 and m2, walletd w1):
#  - m1 accepts payments on channels A and B and redeems them; B gets one more unit; m1's store
#    is backed up (stopped, copied); then m1 accepts two more units on A, hands A off to m2
#    (paid there), and both merchants redeem everything;
#  - m1's old store is put back and m1 started with --restored: A and B (held at the restore) are
#    refused as held (NOT_HOLDER, "custody unconfirmed"): a Pay on B and a move of A back to m1;
#    status, channels and metrics say so; m1's redemption still runs: it claims B's third unit
#    again (the old store had not seen its credit) and the broker credits nothing twice;
#  - a restart without the flag keeps the marks (durable); restore.confirm of B (and refusals of
#    a second confirmation and of an unknown channel) serves B again: a new unit is paid and
#    redeemed;
#  - after settlement: m1 is credited A's 5 and B's 4 units, m2 its 4, each refund is exact, the
#    audit is clean.
set -euo pipefail
. "$(dirname "$0")/deploy_lib.sh"
mpnet=$src/deploy/mpnet

dir=$(mktemp -d /tmp/mprestore.XXXXXX)
trap '"$mpnet" down "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
export MP_TEST_CLOCK=1 MP_REDEEM_INTERVAL=0
"$mpnet" up "$dir" >/dev/null
"$mpnet" merchant "$dir" m2 >/dev/null
B=$dir/broker/admin.sock M1=$dir/m1/admin.sock M2=$dir/m2/admin.sock W=$dir/w1/admin.sock
mid1=$(cat "$dir/m1/merchant_id") mid2=$(cat "$dir/m2/merchant_id")
ep1=$(cat "$dir/m1/endpoint") ep2=$(cat "$dir/m2/endpoint")

pay() { # CHANNEL MERCHANT_SOCK ENDPOINT MERCHANT_ID UNITS: prints the status, or the error
	local o out
	o=$(order "$2" "$5")
	if out=$(mpctl -s "$W" pay channel_id="$1" merchant_id="$4" endpoint="$3" units="$5" \
		order_ref="$o" 2>&1); then
		echo "$out" | get status
	else
		echo "$out"
	fi
}
m1_channel() { # CHANNEL FIELD: the field of m1's record of the channel
	mpctl -s "$M1" channels | python3 -c '
import json, sys
print([c for c in json.load(sys.stdin)["channels"] if c["channel_id"] == sys.argv[1]][0][sys.argv[2]])' "$1" "$2"
}
m1_redeem() { # the credit m1's redemption reaches
	mpctl -s "$M1" redeem >/dev/null
}

account=$(mpctl -s "$W" register | get account_id)
mpctl -s "$B" account.fund account="$account" amount=1000 fund_id="$(openssl rand -hex 16)" >/dev/null
A=$(mpctl -s "$W" issue merchant_id="$mid1" n=100 unit_value=1 days=1 | get channel_id)
Bc=$(mpctl -s "$W" issue merchant_id="$mid1" n=50 unit_value=1 days=1 | get channel_id)
expect "pay 3 on A at m1" "$(pay "$A" "$M1" "$ep1" "$mid1" 3)" OK
expect "pay 2 on B at m1" "$(pay "$Bc" "$M1" "$ep1" "$mid1" 2)" OK
m1_redeem
expect "m1 pending after its first redemption" "$(pending "$mid1")" 5
expect "pay 1 more on B at m1 (not redeemed before the restore)" "$(pay "$Bc" "$M1" "$ep1" "$mid1" 1)" OK

"$mpnet" kill "$dir" m1
cp "$dir/m1/merchant.db" "$dir/m1-backup.db"
[ ! -e "$dir/m1/merchant.db-wal" ] || cp "$dir/m1/merchant.db-wal" "$dir/m1-backup.db-wal"
echo "ok: m1's store backed up while m1 was stopped"
"$mpnet" start "$dir" m1
expect "pay 2 more on A at m1 (after the backup)" "$(pay "$A" "$M1" "$ep1" "$mid1" 2)" OK
expect "pay 4 on A at m2 (handoff m1 -> m2, after the backup)" "$(pay "$A" "$M2" "$ep2" "$mid2" 4)" OK
mpctl -s "$M2" redeem >/dev/null
expect "m2 pending" "$(pending "$mid2")" 4
m1_redeem
expect "m1 pending before the restore (A 5, B 3)" "$(pending "$mid1")" 8

"$mpnet" kill "$dir" m1
rm -f "$dir/m1/merchant.db-wal" "$dir/m1/merchant.db-shm"
cp "$dir/m1-backup.db" "$dir/m1/merchant.db"
[ ! -e "$dir/m1-backup.db-wal" ] || cp "$dir/m1-backup.db-wal" "$dir/m1/merchant.db-wal"
MP_DAEMON_ARGS=--restored "$mpnet" start "$dir" m1
grep -q "restore mode: store restored" "$dir/m1/log" || fail "m1 did not log its restore mode"
expect "m1's record of A after the restore (the backup's)" "$(m1_channel "$A" last)" 3
status=$(mpctl -s "$M1" status)
expect "status: channels with custody unconfirmed" \
	"$(echo "$status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["restore"]["unconfirmed"])')" 2
expect "channels: A's custody unconfirmed" "$(m1_channel "$A" custody_unconfirmed)" True
metrics=$(mpctl -s "$M1" metrics | get prometheus)
echo "$metrics" | grep -q '^micropay_merchant_custody_unconfirmed_channels 2$' ||
	fail "metrics: $(echo "$metrics" | grep custody_unconfirmed)"
echo "ok: metrics: micropay_merchant_custody_unconfirmed_channels 2"

out=$(pay "$Bc" "$M1" "$ep1" "$mid1" 1)
case $out in *NOT_HOLDER*"custody unconfirmed"*) ;; *) fail "a Pay on B at the restored m1: $out" ;; esac
echo "ok: a Pay on B at the restored m1 is refused: $out"
out=$(pay "$A" "$M1" "$ep1" "$mid1" 1)
case $out in *NOT_HOLDER*"custody unconfirmed"*) ;; *) fail "moving A back to the restored m1: $out" ;; esac
echo "ok: moving A (held by m2 since) back to the restored m1 is refused: $out"

expect "B's redeemed end in the restored store (the backup's)" "$(m1_channel "$Bc" redeemed_end)" 2
m1_redeem
expect "B's redeemed end after the restored store's redemption (the broker's)" \
	"$(m1_channel "$Bc" redeemed_end)" 3
expect "m1 pending after the restored store claimed B's 3rd unit again: credited once" \
	"$(pending "$mid1")" 8

"$mpnet" kill "$dir" m1
"$mpnet" start "$dir" m1
expect "after a restart without --restored: B's custody still unconfirmed" \
	"$(m1_channel "$Bc" custody_unconfirmed)" True
out=$(pay "$Bc" "$M1" "$ep1" "$mid1" 1)
case $out in *"custody unconfirmed"*) ;; *) fail "a Pay on B after the restart: $out" ;; esac
echo "ok: B still refused after the restart"

expect "restore.confirm B" "$(mpctl -s "$M1" restore.confirm channel="$Bc" | get unconfirmed)" 1
if out=$(mpctl -s "$M1" restore.confirm channel="$Bc" 2>&1); then fail "B confirmed twice: $out"; fi
echo "ok: a second confirmation is refused: $out"
if out=$(mpctl -s "$M1" restore.confirm channel="$(openssl rand -hex 16)" 2>&1); then
	fail "an unknown channel confirmed: $out"
fi
echo "ok: confirming an unknown channel is refused: $out"
expect "A's custody still unconfirmed" "$(m1_channel "$A" custody_unconfirmed)" True
expect "pay 1 on B at m1 once confirmed" "$(pay "$Bc" "$M1" "$ep1" "$mid1" 1)" OK
m1_redeem
expect "m1 pending after B's new unit" "$(pending "$mid1")" 9

for h in broker m1 m2 w1; do
	mpctl -s "$dir/$h/admin.sock" clock.advance seconds=$((4 * 86400 + 3600)) >/dev/null
done
mpctl -s "$B" sweep.run >/dev/null
expect "A finalised" "$(mpctl -s "$B" channel.settlement channel="$A" | get state)" FINALIZED
expect "A's refund (100 - 9 spent)" "$(mpctl -s "$W" refund channel_id="$A" | get refund)" 91
expect "B's refund (50 - 4 spent)" "$(mpctl -s "$W" refund channel_id="$Bc" | get refund)" 46
expect "m1 available (A 5, B 4)" "$(mpctl -s "$B" account.show account="$mid1" | get balance)" 9
expect "m2 available" "$(mpctl -s "$B" account.show account="$mid2" | get balance)" 4
expect "the customer's balance" "$(mpctl -s "$B" account.show account="$account" | get balance)" 987
expect "audit clean" "$(mpctl -s "$B" audit | get ok)" True
