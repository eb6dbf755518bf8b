#!/usr/bin/env bash
# check.sh: model-check lock.pml with Spin (Debian package spin, and gcc).
#
#   bash lock/model/check.sh
#
# The protocol must hold with each kind of foreign holder (and with itself);
# each variant that drops one of its checks must be caught. About 30 s, 600 MB.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
command -v spin >/dev/null || { echo "model: spin is not installed: apt-get install spin" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here/lock.pml" "$work/"
cd "$work"

# run DEFINES...: prints the number of errors pan found.
run() {
	spin -a "$@" lock.pml >/dev/null
	gcc -w -O2 -DSAFETY -DCOLLAPSE -o pan pan.c
	./pan -m1000000 >out.txt 2>&1 || true
	if grep -q "max search depth too small" out.txt; then
		echo "model: search depth too small with $*" >&2
		exit 1
	fi
	sed -n 's/.*errors: \([0-9]*\).*/\1/p' out.txt
}

fail=0
for cfg in "-DNO_OSLOCK" "-DNO_EXCL" "-DNO_OSLOCK -DNO_EXCL"; do
	n=$(run $cfg)
	if [ "$n" = 0 ]; then
		echo "ok    protocol holds ($cfg): $(grep -o '[0-9]* states, stored' out.txt)"
	else
		echo "FAIL  protocol violated ($cfg); counterexample:"
		spin -t -p $cfg lock.pml | tail -40
		fail=1
	fi
done
for cfg in "-DNO_OSLOCK -DNO_IDENTITY" "-DNO_EXCL -DNO_IDENTITY" "-DNO_OSLOCK -DNO_LIVENESS" "-DNO_EXCL -DLINK_UNLOCKED" "-DNO_EXCL -DDOTNET_WINDOW"; do
	n=$(run $cfg)
	if [ "$n" != 0 ]; then
		echo "ok    variant caught ($cfg)"
	else
		echo "FAIL  variant not caught ($cfg): the model is too weak"
		fail=1
	fi
done
exit $fail
