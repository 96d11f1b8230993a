#!/usr/bin/env bash
# The daemons under valgrind memcheck in a whole network (issue 10, "Sanitizers and memory"):
# deploy/mpnet starts brokerd, two merchantds and two walletds each inside valgrind
# (MP_DAEMON_WRAPPER; PostgreSQL runs natively) with --test-clock, and deploy/demo runs against
# them: purchases, a handoff to the second shop, a transfer to the second customer who pays with
# it, both shops' redemption, time advanced, the channel finalised, the refund, a payout and a
# clean audit. Then every daemon is stopped with SIGTERM (its graceful drain and shutdown) and
# every valgrind report must say "ERROR SUMMARY: 0 errors": no invalid access, no use of
# uninitialised memory, and no definite or indirect leak (leaks count as errors here).
# Skipped (exit 77) for a sanitizer build (valgrind cannot run ASan binaries) or without valgrind.
set -euo pipefail
. "$(dirname "$0")/deploy_lib.sh"
mpnet=$src/deploy/mpnet

command -v valgrind >/dev/null || { echo "SKIP: valgrind is not installed"; exit 77; }
if ldd "$MP_BUILD/brokerd/brokerd" | grep -q libasan; then
	echo "SKIP: $MP_BUILD is a sanitizer build; valgrind runs the plain build's daemons"
	exit 77
fi

dir=$(mktemp -d /tmp/mpvalgrind.XXXXXX)
trap '"$mpnet" down "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
export MP_TEST_CLOCK=1 MP_START_WAIT=180 MP_STOP_WAIT=180 MP_IDLE_TIMEOUT=60
export MP_DAEMON_WRAPPER="valgrind --leak-check=full
 --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect
 --suppressions=$src/tests/valgrind.supp --log-file=$dir/valgrind.%p.log"
"$mpnet" up "$dir" >/dev/null
"$mpnet" merchant "$dir" m2 >/dev/null
"$mpnet" wallet "$dir" w2 >/dev/null
echo "ok: brokerd, m1, m2, w1 and w2 answer under valgrind"

run_demo "$dir" "$dir/demo.out"
echo "ok: the demo ran to settlement with a clean audit"

for name in w2 w1 m2 m1 broker; do
	pid=$(cat "$dir/$name/pid")
	"$mpnet" kill "$dir" "$name"
	grep -q "ERROR SUMMARY: " "$dir/valgrind.$pid.log" ||
		fail "$name (pid $pid) did not finish under valgrind: $(tail -n 20 "$dir/$name/log")"
	grep -q "ERROR SUMMARY: 0 errors" "$dir/valgrind.$pid.log" ||
		{ cat "$dir/valgrind.$pid.log"; fail "valgrind found errors in $name"; }
	echo "ok: $name stopped; valgrind: $(grep -o 'ERROR SUMMARY: .*' "$dir/valgrind.$pid.log")"
done
