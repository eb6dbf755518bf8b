#!/usr/bin/env bash
# check.sh: model-check partition.pml with Spin (Debian packages spin, gcc).
#
#   bash distributed/model/check.sh
#
# The protocol must hold in each scenario; each variant (today's code in one
# place, or the design without one of its rules) must be caught, by the
# check it names. Prints the states each run stored. About 20 s, 300 MB.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
command -v spin >/dev/null || { echo "model: spin is not installed: apt-get install spin" >&2; exit 2; }
command -v gcc >/dev/null || { echo "model: gcc is not installed: apt-get install gcc" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here/partition.pml" "$work/"
cd "$work"

# run DEFINES...: model-checks one configuration; pan's report is in out.txt.
run() {
	spin -a "$@" partition.pml >/dev/null
	gcc -w -O0 -DSAFETY -DCOLLAPSE -o pan pan.c # -O0: compiling takes longer than checking at -O2
	./pan -m100000 >out.txt 2>&1 || true
	if grep -q "max search depth too small" out.txt; then
		echo "model: search depth too small with $*" >&2
		exit 1
	fi
}

states() { grep -o '[0-9]* states, stored' out.txt | sed 's/, stored//'; }
errors() { sed -n 's/.*errors: \([0-9]*\).*/\1/p' out.txt; }

# The counterexample: the model's own account of the steps (its printfs).
trace() { spin -t "$@" partition.pml | sed -n 's/^ *\(t=\|r[01]:\|end:\)/    \1/p'; }

fail=0
# Scenarios (see partition.pml's init): A a refresh and a sign-in on one
# replica, a sign-out on the other; B a sign-out and a sign-in on one, a
# sign-in on the other; C signed out, a sign-in on each, a sign-out on one;
# D a sign-in on one, a sign-out on each; A with a key rotation.
for cfg in "-DSCENARIO_A" "-DSCENARIO_B" "-DSCENARIO_C" "-DSCENARIO_D" "-DSCENARIO_A -DROTATION"; do
	run $cfg
	if [ "$(errors)" = 0 ]; then
		echo "ok    protocol holds ($cfg): $(states)"
	else
		echo "FAIL  protocol violated ($cfg): $(grep -m1 -o 'assertion violated.*\|invalid end state' out.txt); counterexample:"
		trace $cfg
		fail=1
	fi
done

# Variants: DEFINES|the check that must catch it. CODE is the code as first
# built, before it adopted what this model found (see README.md): the code
# now follows the protocol checked above.
for v in "-DITEM1 -DSCENARIO_A|keptWriteLost" \
	"-DITEM2 -DSCENARIO_D|signOutUndone" \
	"-DITEM3 -DSCENARIO_B|signOutUndone" \
	"-DITEM4 -DSCENARIO_A|signOutUndone" \
	"-DITEM10 -DSCENARIO_A -DROTATION|overwritesUnread" \
	"-DLEADAT -DSCENARIO_C|signOutUndone" \
	"-DLEADAFTER -DSCENARIO_C|signOutUndone" \
	"-DLEADREFRESH -DSCENARIO_A|signOutUndone" \
	"-DNOREFRESH -DSCENARIO_A|signOutUndone" \
	"-DCODE -DSCENARIO_A|keptWriteLost" \
	"-DCODE -DSCENARIO_B|keptWriteLost" \
	"-DCODE -DSCENARIO_C|signOutUndone"; do
	cfg=${v%|*} want=${v#*|}
	run $cfg
	if [ "$(errors)" != 0 ] && grep -q "assertion violated.*($want)" out.txt; then
		echo "ok    variant caught ($cfg): $want after $(states); counterexample:"
		trace $cfg
	elif [ "$(errors)" != 0 ]; then
		echo "FAIL  variant caught by another check than $want ($cfg): $(grep -m1 -o 'assertion violated.*\|invalid end state' out.txt)"
		trace $cfg
		fail=1
	else
		echo "FAIL  variant not caught ($cfg): the model is too weak ($(states))"
		fail=1
	fi
done
exit $fail
