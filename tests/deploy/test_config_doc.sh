#!/usr/bin/env bash
# The configuration reference cannot drift from the build: deploy/config/*.ini and
# docs/config.md equal what the daemons print (deploy/gen-config-docs), each example passes
# --check-config, a broken copy is refused with file:line and exit status 1, and --help lists
# every key of the example.
set -euo pipefail
src=${MP_SOURCE_ROOT:?MP_SOURCE_ROOT is not set}
build=${MP_BUILD:?MP_BUILD is not set}
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d /tmp/mpconfigdoc.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

for d in brokerd merchantd walletd; do
	bin=$build/$d/$d example=$src/deploy/config/$d.ini
	"$bin" --print-config >"$tmp/$d.ini"
	diff -u "$example" "$tmp/$d.ini" >"$tmp/$d.diff" ||
		{ cat "$tmp/$d.diff"; fail "$example differs from $d --print-config (run deploy/gen-config-docs)"; }
	"$bin" -c "$example" --check-config >"$tmp/$d.check" || fail "$d refuses its own example"
	grep -q "configuration OK" "$tmp/$d.check" || fail "$d --check-config said: $(cat "$tmp/$d.check")"
	cp "$example" "$tmp/$d.bad.ini"
	printf '[tls]\nno_such_key = 1\n' >>"$tmp/$d.bad.ini"
	line=$(wc -l <"$tmp/$d.bad.ini")
	set +e
	"$bin" -c "$tmp/$d.bad.ini" --check-config >/dev/null 2>"$tmp/$d.bad.err"
	rc=$?
	set -e
	[ "$rc" = 1 ] || fail "$d --check-config of a bad file exited $rc, not 1"
	grep -q "$d.bad.ini:$line: unknown key 'no_such_key'" "$tmp/$d.bad.err" ||
		fail "$d did not name file:line: $(cat "$tmp/$d.bad.err")"
	"$bin" --help >"$tmp/$d.help"
	for key in $(sed -n 's/^#\{0,1\}\([a-z_0-9]*\) =.*/\1/p' "$example"); do
		grep -q "^  $key " "$tmp/$d.help" || fail "$d --help does not list $key"
	done
	echo "ok: $d: example and --print-config agree, --check-config accepts it and refuses a bad key at line $line, --help lists every key"
done
# brokerd gives wallets frames large enough for a dispute's BadKeyProof (a sealed chunk of up
# to 512 KiB): a smaller [limits] max_frame is refused with the reason.
cp "$src/deploy/config/brokerd.ini" "$tmp/small-frame.ini"
printf '[limits]\nmax_frame = 65536\n' >>"$tmp/small-frame.ini"
set +e
"$build/brokerd/brokerd" -c "$tmp/small-frame.ini" --check-config >/dev/null 2>"$tmp/small-frame.err"
rc=$?
set -e
[ "$rc" = 1 ] || fail "brokerd --check-config with max_frame 65536 exited $rc, not 1"
grep -q "small-frame.ini:[0-9]*: \[limits\] max_frame = 65536 is out of range: expected 786432 .. .*BadKeyProof" \
	"$tmp/small-frame.err" || fail "brokerd did not say where and why: $(cat "$tmp/small-frame.err")"
echo "ok: brokerd refuses a max_frame too small for a BadKeyProof"
# docs/config.md as deploy/gen-config-docs would write it now, in a scratch copy.
mkdir -p "$tmp/deploy" "$tmp/docs"
cp "$src/deploy/gen-config-docs" "$tmp/deploy/"
MP_BUILD=$build "$tmp/deploy/gen-config-docs"
diff -u "$src/docs/config.md" "$tmp/docs/config.md" ||
	fail "docs/config.md differs from the daemons' reference (run deploy/gen-config-docs)"
echo "ok: docs/config.md matches the build"
