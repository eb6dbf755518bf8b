#!/usr/bin/env bash
# with-keyring.sh COMMAND [ARGS...]
#
# Runs COMMAND on a private D-Bus session bus with a throwaway HOME and an
# unlocked gnome-keyring providing the Secret Service, so the Linux tests talk
# to a real Secret Service and never touch the user's own keyring:
#
#   bash scripts/with-keyring.sh go test -race ./persistence
#
# Go's caches are kept (GOCACHE, GOMODCACHE are resolved before HOME changes).
# Needs the Debian packages dbus-daemon, dbus-bin and gnome-keyring.
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: with-keyring.sh COMMAND [ARGS...]" >&2; exit 2; }
for tool in dbus-run-session dbus-send gnome-keyring-daemon; do
	command -v "$tool" >/dev/null || {
		echo "with-keyring: $tool is missing: apt-get install dbus-daemon dbus-bin gnome-keyring" >&2
		exit 2
	}
done
if command -v go >/dev/null; then
	export GOCACHE="${GOCACHE:-$(go env GOCACHE)}" GOMODCACHE="${GOMODCACHE:-$(go env GOMODCACHE)}"
	export GOPATH="${GOPATH:-$(go env GOPATH)}"
fi
export npm_config_cache="${npm_config_cache:-$HOME/.npm}"
base=$(mktemp -d "${TMPDIR:-/tmp}/msalcache-keyring.XXXXXX")
trap 'rm -rf "$base"' EXIT

# The session: HOME and XDG_RUNTIME_DIR are fresh, the keyring is created
# with a throwaway password and unlocked, and the Secret Service name is
# owned before COMMAND starts (bounded waits throughout).
# shellcheck disable=SC2016
timeout "${WITH_KEYRING_TIMEOUT:-3000}" dbus-run-session -- bash -c '
	set -u
	base=$1; shift
	export HOME="$base/home" XDG_RUNTIME_DIR="$base/run"
	mkdir -p "$HOME" "$XDG_RUNTIME_DIR" && chmod 700 "$HOME" "$XDG_RUNTIME_DIR"
	if ! printf throwaway | timeout 20 gnome-keyring-daemon --unlock --components=secrets >/dev/null; then
		echo "with-keyring: gnome-keyring-daemon did not start within 20 s" >&2
		exit 2
	fi
	for _ in $(seq 100); do
		if dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
			org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null | grep -q "boolean true"; then
			echo "with-keyring: gnome-keyring $(gnome-keyring-daemon --version 2>/dev/null | head -n1 | awk "{print \$2}") owns org.freedesktop.secrets on a private session bus" >&2
			exec "$@"
		fi
		sleep 0.1
	done
	echo "with-keyring: no Secret Service on the session bus after 10 s" >&2
	exit 2
' with-keyring "$base" "$@"
