#!/usr/bin/env bash
# A merchant with a backlog of thousands of claims gets it all settled, each claim credited
# exactly once, when its Redeem is too large for the broker's statement timeout (issue 9: a
# Redeem of 10,000 claims ran past it and merchantd resent the same bytes for ever).
#
# A private network (mpbench --spawn, the launcher the tests use) whose brokerd has a 100 ms
# statement timeout: merchantd holds CHANNELS paid channels and redeems them in one round,
# starting with one Redeem of every claim. That Redeem's database step is cancelled by the
# timeout; brokerd answers LIMIT "split it" (stores nothing), merchantd abandons it and claims
# the channels again in Redeems of half as many claims, with new redeem_ids, until they fit.
# Checked: every paid channel was claimed and every unit paid credited (mpbench's redeem
# figures: merchantd's answer), brokerd answered at least one Redeem LIMIT for its timeout
# (micropay_broker_redeem_timeouts_total) and merchantd split (micropay_merchant_redeem_
# splits_total), the merchant's pending balance at the broker is exactly the units paid times
# their value, and, after brokerd is restarted with its default timeout, the audit is clean.
set -euo pipefail
src=${MP_SOURCE_ROOT:?MP_SOURCE_ROOT is not set}
build=${MP_BUILD:?MP_BUILD is not set}
CHANNELS=${MP_BACKLOG_CHANNELS:-2000}
UNITS=40
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mpnet-backlog.XXXXXX")
net=$tmp/net
trap 'MP_BUILD="$build" "$src/deploy/mpnet" down "$net" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
ctl() { "$build/tools/mpctl" --timeout 120 -s "$net/$1/admin.sock" "${@:2}"; }
metric() { # DAEMON NAME: the value of an unlabelled metric
	ctl "$1" metrics | python3 -c '
import json, sys
for line in json.load(sys.stdin)["prometheus"].splitlines():
    if line.split(" ")[0] == sys.argv[1]:
        print(line.split(" ")[1])' "$2"
}

rc=0
MP_DB_STATEMENT_TIMEOUT_MS=100 "$build/tools/mpbench" --mpnet "$src/deploy/mpnet" \
	--build "$build" --spawn="$net" --keep --json -q -d 4 -n "$CHANNELS" -u "$UNITS" -c 2 \
	-w 16 redeem >"$tmp/run.json" 2>"$tmp/run.err" || rc=$?
# mpbench's own audit may run past the 100 ms timeout: it is checked below, after the restart.
[ -s "$tmp/run.json" ] || { cat "$tmp/run.err" >&2; fail "mpbench exited with $rc, no result"; }

python3 - "$tmp/run.json" "$CHANNELS" >"$tmp/units" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
channels = int(sys.argv[2])
red = run["results"].get("redeem")
def need(cond, what):
    if not cond:
        sys.exit("FAIL: " + what + "\n" + json.dumps(run, indent=1)[:4000])
need(red is not None, "no redeem result")
need(red["pay"]["failed"] == 0, "redeem: payments failed")
need(red["count"] == red["pay"]["channels_paid"] >= channels * 9 // 10,
     "redeem: one claim per paid channel, (nearly) every channel paid")
need(red["paywords"] == red["pay"]["units_paid"] == red["merchant_answer"]["credited"],
     "redeem: every unit paid credited once")
print(red["pay"]["units_paid"])
PY
units=$(cat "$tmp/units")

timeouts=$(metric broker micropay_broker_redeem_timeouts_total)
splits=$(metric m1 micropay_merchant_redeem_splits_total)
[ "${timeouts:-0}" -ge 1 ] || fail "brokerd answered no Redeem LIMIT for its statement timeout"
[ "${splits:-0}" -ge 1 ] || fail "merchantd did not split its Redeem"
grep -q "ran past the statement timeout" "$net/broker/log" ||
	fail "brokerd did not log the timeout"
echo "statement timeouts answered LIMIT: $timeouts; merchantd splits: $splits; units: $units"

# The pending balance: each unit (of value 1 in mpbench) credited exactly once.
mid=$(cat "$net/m1/merchant_id")
ctl broker account.show "account=$mid" | python3 -c '
import json, sys
a = json.load(sys.stdin); want = int(sys.argv[1])
got = [r["balance"] for r in a["related"] if r["kind"] == "merchant_pending"]
sys.exit(0 if got == [want] else "FAIL: pending balance %s, expected %d: %s" % (got, want, a))
' "$units"

# The audit with brokerd's default statement timeout.
sed -i 's/^statement_timeout_ms = .*/statement_timeout_ms = 10000/' "$net/broker/config.ini"
MP_BUILD="$build" "$src/deploy/mpnet" kill "$net" broker >/dev/null
MP_BUILD="$build" "$src/deploy/mpnet" start "$net" broker >/dev/null
ctl broker audit >"$tmp/audit.json"
python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); sys.exit(0 if a["ok"] is True else "FAIL: audit not clean: %s" % a)' "$tmp/audit.json"
if grep -E -A30 'ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:' "$net"/*/log >&2; then
	fail "a daemon reported a sanitizer error"
fi
echo "ok"
