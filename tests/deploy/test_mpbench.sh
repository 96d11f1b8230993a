#!/usr/bin/env bash
# mpbench's smoke test (not a benchmark: no timing is asserted). A private network with
# --spawn, every built scenario (chain tls pay online-baseline issue redeem handoff transfer
# half-peak issue2 http) for one second with a handful of channels, --json: the machine facts, a result with a
# non-zero count for every scenario, the ratios, the pay extras, every unit paid redeemed, every
# channel handed off to m2 and transferred once, and the broker's audit clean afterwards
# (mpbench's own and, independently, mpctl's). An unknown scenario is refused with usage status
# 2; --csv has one line per scenario.
set -euo pipefail
src=${MP_SOURCE_ROOT:?MP_SOURCE_ROOT is not set}
build=${MP_BUILD:?MP_BUILD is not set}
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mpbench-smoke.XXXXXX")
net=$tmp/net
trap 'MP_BUILD="$build" "$src/deploy/mpnet" down "$net" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT

bench() { "$build/tools/mpbench" --mpnet "$src/deploy/mpnet" --build "$build" "$@"; }

rc=0; bench nosuch >/dev/null 2>"$tmp/usage.err" || rc=$?
[ "$rc" = 2 ] || fail "an unknown scenario gave status $rc, expected 2"
grep -q "unknown scenario 'nosuch'" "$tmp/usage.err" ||
	fail "no reason for refusing 'nosuch': $(cat "$tmp/usage.err")"

rc=0; bench --spawn="$net" --keep --json -q -d 1 -n 20 -u 2000 -c 2 -w 8 >"$tmp/run.json" \
	2>"$tmp/run.err" || rc=$?
[ "$rc" = 0 ] || { cat "$tmp/run.err" >&2; fail "mpbench --spawn exited with $rc"; }

python3 - "$tmp/run.json" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
def need(cond, what):
    if not cond:
        sys.exit("FAIL: " + what + "\n" + json.dumps(run, indent=1)[:4000])
m = run["machine"]
need(m["cpu"] and m["cores"] >= 1 and m["kernel"], "machine facts")
need(len(m["load_average"]) == 3, "load average")
need(m["disk_sync"]["rounds"] > 0 and m["disk_sync"]["p50_us"] > 0, "disk sync latency")
res = run["results"]
for name in ["chain", "tls", "pay", "online-baseline", "issue", "redeem", "handoff", "transfer",
             "half-peak", "issue2", "http"]:
    r = res.get(name)
    need(r is not None, "no result for " + name)
    need(r["count"] > 0 and r["per_second"] > 0, name + ": zero count or rate")
    need(isinstance(r["ratios"], dict), name + ": no ratios")
    if name not in ("chain", "redeem"):
        need(r["latency_us"]["p50"] > 0 and r["latency_us"]["p99"] >= r["latency_us"]["p50"]
             and r["latency_us"]["p999"] >= r["latency_us"]["p99"], name + ": latency percentiles")
for name in ["tls", "pay", "issue"]:
    need(set(res[name]["ratios"]) == {"chain", "tls", "online-baseline"} - {name},
         name + ": ratios against the three references")
pay = res["pay"]
need(pay["failed"] == 0 and pay["lost"] == 0, "pay: payments failed or lost")
need(pay["channels"] == 20 and pay["units_paid"] >= pay["count"], "pay: channels, units")
need(pay["answers"].get("UNDERPAID", 0) + pay["answers"].get("OK", 0) == pay["count"],
     "pay: answers by code add up")
need(pay["cpu_seconds"]["merchantd"] > 0, "pay: merchantd CPU seconds")
need(pay["merchant_rss_per_channel_bytes"] is not None, "pay: memory per channel")
need(pay["batches"]["batches"] > 0, "pay: batches")
need(res["issue"]["count"] == 20 and res["issue"]["brokers"] == 1, "issue: every channel issued")
need(res["issue2"]["count"] == 20 and res["issue2"]["brokers"] == 2 and
     res["issue2"]["failed"] == 0, "issue2: every channel issued over two brokerds")
for name, merchant in [("handoff", "merchantd2"), ("transfer", "merchantd")]:
    r = res[name]
    need(r["count"] == r["channels"] == 20 and r["failed"] == 0 and r["lost"] == 0,
         name + ": every channel exactly once, none refused")
    # 20 handoffs or transfers may take less CPU than one clock tick of /proc (10 ms): the
    # figure must be there, not above zero (pay's, thousands of payments, is checked above 0)
    need(r["cpu_seconds"].get(merchant, -1) >= 0,
         name + ": CPU seconds of the merchant serving it")
hp = res["half-peak"]
need(hp["peak"]["count"] > 0 and
     # both figures are printed with 6 significant digits: compare relatively
     abs(hp["paced_at_per_second"] - hp["peak"]["per_second"] / 2) <=
     1e-4 * hp["peak"]["per_second"] and
     hp["failed"] == 0 and hp["lost"] == 0 and "behind" in hp,
     "half-peak: a peak run, then one paced at half its rate")
need(res["online-baseline"]["cpu_seconds"]["postgres"] > 0, "online-baseline: postgres CPU")
http = res["http"]
need(http["failed"] == 0 and http["direct"]["count"] > 0 and http["free"]["count"] > 0 and
     http["paid_vs_direct"] > 0 and http["paid_vs_free"] > 0 and http["channels"] == 20,
     "http: paid requests through the gateway, the direct and free loads beside them")
red = res["redeem"]
# The round redeems everything the merchant holds unredeemed: the pay scenario's payments too.
need(red["pay"]["failed"] == 0 and
     red["count"] == red["pay"]["channels_paid"] + pay["channels_paid"] > 0,
     "redeem: one claim per paid channel")
need(red["paywords"] == red["pay"]["units_paid"] + pay["units_paid"] ==
     red["merchant_answer"]["credited"], "redeem: every unit paid was redeemed and credited")
need("brokerd" in red["cpu_seconds"], "redeem: brokerd CPU seconds reported")
need(run["audit"]["ok"] is True, "mpbench's audit")
need(run["audit"]["seconds"] > 0, "mpbench's audit: its duration")
PY

"$build/tools/mpctl" -s "$net/broker/admin.sock" audit >"$tmp/audit.json"
python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); sys.exit(0 if a["ok"] is True else "FAIL: audit not clean: %s" % a)' "$tmp/audit.json"

bench --net "$net" --csv -q -d 1 -n 5 -u 50 -c 1 -w 4 chain tls >"$tmp/run.csv" ||
	fail "mpbench --net --csv failed"
[ "$(wc -l <"$tmp/run.csv")" = 3 ] || fail "csv: expected a header and 2 lines: $(cat "$tmp/run.csv")"
grep -q '^tls,frames echoed,' "$tmp/run.csv" || fail "csv: no tls line: $(cat "$tmp/run.csv")"
# --sweep: the scenarios once per number of channels, the point in the CSV's last column.
bench --net "$net" --csv -q -d 1 -u 50 -c 1 -w 4 --sweep channels=3,6 issue >"$tmp/sweep.csv" ||
	fail "mpbench --sweep failed"
python3 - "$tmp/sweep.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
got = [(r["scenario"], r["count"], r["channels"]) for r in rows]
if got != [("issue", "3", "3"), ("issue", "6", "6")]:
    sys.exit("FAIL: sweep: expected issue 3 then 6 channels, got %s" % got)
PY
rc=0; bench --sweep channels=x issue >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "--sweep channels=x gave status $rc, expected 2"
# deploy/bench-report: medians over runs (one tiny one here) and the plot data.
"$src/deploy/bench-report" --build "$build" --runs 1 --no-sweep --out "$tmp/report" -- \
	-d 1 -n 5 -u 200 -c 1 -w 4 pay >"$tmp/report.out" 2>"$tmp/report.err" ||
	{ cat "$tmp/report.err" >&2; fail "bench-report failed"; }
grep -q '^| pay | payments | 1 | ' "$tmp/report/medians.md" ||
	fail "bench-report: no median row for pay: $(cat "$tmp/report/medians.md")"
grep -q 'Every audit clean: yes' "$tmp/report/medians.md" || fail "bench-report: audits"
[ -s "$tmp/report/latency-cdf.dat" ] || fail "bench-report: no latency CDF data"
# Daemons built with sanitizers report in their logs, at the latest when they exit.
MP_BUILD="$build" "$src/deploy/mpnet" down "$net" >/dev/null 2>&1
if grep -E -A30 'ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:' "$net"/*/log >&2; then
	fail "a daemon reported a sanitizer error"
fi
echo "mpbench smoke test passed"
