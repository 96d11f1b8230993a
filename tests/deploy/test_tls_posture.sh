#!/usr/bin/env bash
# TLS posture of every TLS listener of a network (brokerd and a merchant), as sslscan
# (Debian's sslscan) sees it from outside: TLS 1.3 only (SSLv2, SSLv3, TLS 1.0, 1.1 and 1.2
# refused), no renegotiation, no compression, only TLS 1.3 AEAD suites. Then the key files: a
# daemon refuses to start while its TLS key or its signing key can be read by other users.
# Skipped (exit 77, with the reason) where sslscan is not installed.
set -euo pipefail
src=${MP_SOURCE_ROOT:?MP_SOURCE_ROOT is not set}
export MP_BUILD=${MP_BUILD:?MP_BUILD is not set}
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v sslscan >/dev/null || { echo "SKIP: sslscan is not installed (deploy/install-deps installs it)"; exit 77; }

dir=$(mktemp -d /tmp/mptls.XXXXXX)
cleanup() { "$src/deploy/mpnet" down "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT
"$src/deploy/mpnet" up "$dir" --no-wallet >"$dir/up.log" 2>&1 ||
	{ cat "$dir/up.log" >&2; fail "mpnet up"; }

for daemon in broker m1; do
	ep=$(cat "$dir/$daemon/endpoint")
	out=$(sslscan --no-colour --no-heartbleed --no-groups "$ep" 2>&1) || fail "sslscan $ep: $out"
	for old in SSLv2 SSLv3 TLSv1.0 TLSv1.1 TLSv1.2; do
		grep -Eq "^$old +disabled" <<<"$out" || fail "$daemon ($ep): $old not disabled:
$out"
	done
	grep -Eq '^TLSv1.3 +enabled' <<<"$out" || fail "$daemon ($ep): TLS 1.3 not enabled"
	grep -q 'Session renegotiation not supported' <<<"$out" ||
		fail "$daemon ($ep): renegotiation offered"
	ciphers=$(grep -E '^(Preferred|Accepted) ' <<<"$out")
	[ -n "$ciphers" ] || fail "$daemon ($ep): no cipher suites listed"
	if grep -Ev 'TLSv1\.3 .*TLS_(AES_128_GCM_SHA256|AES_256_GCM_SHA384|CHACHA20_POLY1305_SHA256)' <<<"$ciphers"; then
		fail "$daemon ($ep): a suite other than TLS 1.3 AEAD"
	fi
	echo "ok: $daemon ($ep): TLS 1.3 only, $(wc -l <<<"$ciphers") AEAD suites, no renegotiation"
done

# Key files readable by others are refused at start, naming the file and the fix.
"$src/deploy/mpnet" kill "$dir" broker >/dev/null
for key in "$dir/tls/broker.key" "$dir/broker/broker.key"; do
	chmod 0644 "$key"
	if "$MP_BUILD/brokerd/brokerd" -c "$dir/broker/config.ini" >"$dir/refused.log" 2>&1; then
		fail "brokerd started with $key readable by others"
	fi
	grep -q "$key: mode 0644 lets other users read the key: chmod 600" "$dir/refused.log" ||
		fail "brokerd's refusal does not name $key and the fix: $(cat "$dir/refused.log")"
	chmod 0600 "$key"
	echo "ok: brokerd refuses to start with $key mode 0644"
done
