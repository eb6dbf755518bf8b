#!/usr/bin/env bash
# wintest.sh PACKAGE [test flags...]
#
# Builds the Windows test binary of one package and runs it under Wine, so the
# real Windows code (DPAPI, LockFileEx, Windows file semantics) is exercised on
# Linux. Output is go test -v style; the exit status is the test binary's.
#
#   bash scripts/wintest.sh ./lock -test.run TestStale
#
# WINEPREFIX: the Wine prefix to use; default a per-user one under the temp
# directory, created on first use (~10 s) and reused. WINTEST_JSON=1 pipes the
# output through `go tool test2json` (used by scripts/check.sh to count tests).
set -euo pipefail

pkg=${1:?usage: wintest.sh PACKAGE [test flags...]}
shift
root=$(cd "$(dirname "$0")/.." && pwd)
wine=${WINE:-/usr/lib/wine/wine64}
[ -x "$wine" ] || wine=$(command -v wine64 || command -v wine || true)
if [ -z "$wine" ] || [ ! -x "$wine" ]; then
	echo "wintest: Wine is not installed: apt-get install wine64 gcc-mingw-w64-x86-64" >&2
	exit 2
fi
command -v x86_64-w64-mingw32-gcc >/dev/null || {
	echo "wintest: the MinGW compiler is not installed: apt-get install gcc-mingw-w64-x86-64" >&2
	exit 2
}

export WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
export WINEPREFIX=${WINEPREFIX:-${TMPDIR:-/tmp}/msalcache-wine-$(id -u)}

# prepare_prefix creates the prefix (bounded) and installs the ProcessPrng
# shim that Go 1.22+ needs and Wine 8.0 lacks.
prepare_prefix() {
	local sys32="$WINEPREFIX/drive_c/windows/system32"
	if [ ! -f "$WINEPREFIX/.msalcache-ready" ]; then
		mkdir -p "$WINEPREFIX"
		if ! timeout 180 "$(dirname "$wine")/wineboot" -i >/dev/null 2>&1 &&
			! timeout 180 "$wine" wineboot -i >/dev/null 2>&1; then
			echo "wintest: creating the Wine prefix $WINEPREFIX failed or took over 180 s" >&2
			exit 2
		fi
		# Windows 10, not Wine's default 7: Node.js refuses anything older than 8.1.
		timeout 120 "$wine" winecfg -v win10 >/dev/null 2>&1 || true
		timeout 60 "$(dirname "$wine")/wineserver" -w 2>/dev/null || true
		[ -d "$sys32" ] || { echo "wintest: Wine prefix $WINEPREFIX has no system32 after wineboot" >&2; exit 2; }
	fi
	if [ ! -f "$sys32/bcryptprimitives.dll" ] || [ "$root/scripts/winshim/processprng.c" -nt "$sys32/bcryptprimitives.dll" ]; then
		x86_64-w64-mingw32-gcc -O2 -shared -o "$sys32/bcryptprimitives.dll" \
			"$root/scripts/winshim/processprng.c" "$root/scripts/winshim/processprng.def" -ladvapi32
	fi
	touch "$WINEPREFIX/.msalcache-ready"
}

(
	flock -w 300 9 || { echo "wintest: timed out waiting for the prefix lock" >&2; exit 2; }
	prepare_prefix
) 9>"${WINEPREFIX%/}.lock"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
name=$(basename "$pkg")
[ "$name" = "." ] && name=msalcache
CGO_ENABLED=0 GOOS=windows GOARCH=amd64 go test -c -o "$out/$name.test.exe" "$pkg"
if [ ! -f "$out/$name.test.exe" ]; then
	echo "wintest: $pkg has no test files" >&2
	exit 0
fi
importpath=$(go list "$pkg")
# Run in the package directory, as go test does, so tests find their files.
cd "$(go list -f '{{.Dir}}' "$pkg")"
# WINTEST_NODE_DIR: a directory holding a Windows node.exe, put on the
# Windows PATH for the interop tests (scripts/check.sh provides one).
if [ -n "${WINTEST_NODE_DIR:-}" ]; then
	export WINEPATH="Z:${WINTEST_NODE_DIR//\//\\}"
fi
if [ "${WINTEST_JSON:-}" = 1 ]; then
	timeout "${WINTEST_TIMEOUT:-900}" go tool test2json -t -p "windows/$importpath" \
		"$wine" "$out/$name.test.exe" -test.v=test2json -test.timeout=10m "$@"
else
	timeout "${WINTEST_TIMEOUT:-900}" "$wine" "$out/$name.test.exe" -test.v -test.timeout=10m "$@"
fi
