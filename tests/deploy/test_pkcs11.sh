#!/usr/bin/env bash
# Every signing key in a PKCS#11 token (issue 10, "Keys in a tamper-resistant token";
# docs/keys.md), with SoftHSM2 as the token:
#  - deploy/mpnet generates brokerd's, both merchantds' and both walletds' keys inside the token
#    (pkcs11-tool --keypairgen, Ed25519) and names them by PKCS#11 URIs; no seed file exists;
#  - each daemon's public key is the token's (brokerd's status, a merchant's registration, a
#    wallet's account key), and the whole demo runs: purchases, a handoff, a transfer, both
#    shops' redemption, finalisation, refund, payout, a clean audit;
#  - a wrong PIN, an absent token, a key label the token lacks, a PIN in the URI and a PIN file
#    others can read each stop merchantd at start with a line saying so; a wallet given another
#    account key than its store's, or none after a token key, does not start either; with the
#    right URIs again both serve.
set -euo pipefail
. "$(dirname "$0")/deploy_lib.sh"
mpnet=$src/deploy/mpnet

for tool in softhsm2-util pkcs11-tool; do
	command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed (deploy/install-deps installs it)"; exit 77; }
done
module=$(dpkg -L libsofthsm2 2>/dev/null | grep '/libsofthsm2\.so$' | head -n 1 || true)
[ -n "$module" ] || module=/usr/lib/softhsm/libsofthsm2.so

dir=$(mktemp -d /tmp/mppkcs11.XXXXXX)
net=$dir/net
trap '"$mpnet" down "$net" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
mkdir -p "$dir/tokens"
export SOFTHSM2_CONF=$dir/softhsm2.conf
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\n' "$dir" >"$SOFTHSM2_CONF"
(umask 077; echo 1234 >"$dir/pin")
softhsm2-util --init-token --free --label micropay --pin 1234 --so-pin 5678 >/dev/null
export MP_PKCS11_MODULE=$module MP_PKCS11_TOKEN=micropay MP_PKCS11_PIN_FILE=$dir/pin
export MP_TEST_CLOCK=1
"$mpnet" up "$net" >/dev/null
"$mpnet" merchant "$net" m2 >/dev/null
"$mpnet" wallet "$net" w2 >/dev/null

token_pk() { # LABEL: the Ed25519 public key of that label in the token, 64 hex digits
	pkcs11-tool --module "$module" --token-label micropay --read-object --type pubkey \
		--label "$1" -o "$dir/pub.pem" >/dev/null 2>&1
	openssl pkey -pubin -in "$dir/pub.pem" -outform DER | tail -c 32 | xxd -p -c 64
}
label_of() { # CONFIG: the object label its key URI names
	sed -n 's/^\(key_file\|account_key\) = pkcs11:.*object=\([^?;]*\).*/\2/p' "$1"
}
for h in broker m1 m2 w1 w2; do
	grep -Eq '^(key_file|account_key) = pkcs11:token=micropay;' "$net/$h/config.ini" ||
		fail "$h's key is not a PKCS#11 URI: $(grep -E 'key_file|account_key' "$net/$h/config.ini")"
done
[ -z "$(find "$net" -name '*.key' -path "$net/[bmw]*" ! -path '*/tls/*')" ] ||
	fail "a seed file exists: $(find "$net" -name '*.key' ! -path '*/tls/*')"
echo "ok: broker, m1, m2, w1 and w2 sign with keys in the token (no seed file)"
expect "brokerd's public key is the token's" \
	"$(mpctl -s "$net/broker/admin.sock" status | get broker_pk)" "$(token_pk "$(label_of "$net/broker/config.ini")")"
expect "w1's account key is the token's" \
	"$(mpctl -s "$net/w1/admin.sock" status | get account_pk)" "$(token_pk "$(label_of "$net/w1/config.ini")")"

run_demo "$net" "$dir/demo.out"
echo "ok: the demo ran to settlement with every key in the token; the audit is clean"

refused_at_start() { # HOST WHAT SED_EXPR LOG_TEXT: HOST started with its config edited does not start
	sed "$3" "$dir/$1.ini" >"$net/$1/config.ini"
	: >"$net/$1/log"
	if "$mpnet" start "$net" "$1" >/dev/null 2>&1; then fail "$1 started with $2"; fi
	grep -q "$4" "$net/$1/log" || fail "$2: $1's log does not say '$4': $(tail -n 3 "$net/$1/log")"
	echo "ok: $2: $1 refuses to start: $(grep -o "$4.*" "$net/$1/log" | head -n 1)"
}
cp "$net/m1/config.ini" "$dir/m1.ini"
cp "$net/w2/config.ini" "$dir/w2.ini"
"$mpnet" kill "$net" m1
"$mpnet" kill "$net" w2
(umask 077; echo 9999 >"$dir/badpin")
refused_at_start m1 "a wrong PIN" "s|pin-source=[^&]*|pin-source=$dir/badpin|" "PIN is incorrect"
refused_at_start m1 "an absent token" "s|token=micropay|token=absent|" "no token matches the URI"
refused_at_start m1 "a key the token lacks" "s|object=[^?;]*|object=nosuchkey|" "no Ed25519 private key matches"
refused_at_start m1 "a PIN in the URI" "s|pin-source=[^&]*|pin-value=1234|" "pin-value is refused"
cp "$dir/pin" "$dir/openpin" && chmod 644 "$dir/openpin"
refused_at_start m1 "a PIN file others can read" "s|pin-source=[^&]*|pin-source=$dir/openpin|" "chmod 600"
w1_label=$(label_of "$net/w1/config.ini")
refused_at_start w2 "another account key (w1's) for w2's store" "s|object=[^?;]*|object=$w1_label|" \
	"the account key differs from the one this store has used"
refused_at_start w2 "w2 without its token key" "/^account_key = /d" "the account key is not in the store"
cp "$dir/w2.ini" "$net/w2/config.ini"
"$mpnet" start "$net" w2
expect "w2 serves again with its token key: registered" \
	"$(mpctl -s "$net/w2/admin.sock" status | python3 -c 'import json,sys; print(json.load(sys.stdin)["account_id"] is not None)')" True

cp "$dir/m1.ini" "$net/m1/config.ini"
"$mpnet" start "$net" m1
expect "m1 serves again with its token key: status registered" \
	"$(mpctl -s "$net/m1/admin.sock" status | get registered)" True
expect "audit clean" "$(mpctl -s "$net/broker/admin.sock" audit | get ok)" True
