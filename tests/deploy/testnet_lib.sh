# Shared by the deploy/testnet suites (sourced): the probe for namespaces and the calls the
# suites make on the network in `dir` (set it and the admin sockets before use).
. "$(dirname "${BASH_SOURCE[0]}")/deploy_lib.sh"
testnet=$src/deploy/testnet

# Exit 77 (skipped, with the reason) where network namespaces cannot be created.
testnet_probe() {
	if [ "$(id -u)" != 0 ] || ! ip netns add "mpprobe$$" 2>/dev/null; then
		echo "SKIP: network namespaces cannot be created here (needs root and iproute2)"
		exit 77
	fi
	ip netns del "mpprobe$$"
}

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
