//go:build linux || freebsd || netbsd || openbsd || dragonfly

package persistence

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// runUserDir is where godbus looks for the per-user bus (<dir>/<uid>/bus);
// a test seam.
var runUserDir = "/run/user"

// sessionBusCheck returns nil if godbus will find a session bus without
// starting one. godbus uses $DBUS_SESSION_BUS_ADDRESS, then
// /run/user/<uid>/bus or /run/user/<uid>/dbus-session, and otherwise execs
// dbus-launch, which leaves a stray daemon behind (or fails without X11):
// never let it get there.
func sessionBusCheck() error {
	if a := os.Getenv("DBUS_SESSION_BUS_ADDRESS"); a != "" && a != "autolaunch:" {
		return nil
	}
	dir := filepath.Join(runUserDir, strconv.Itoa(os.Getuid()))
	for _, name := range []string{"bus", "dbus-session"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			return nil
		}
	}
	hint := ""
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
		if _, err := os.Stat(filepath.Join(x, "bus")); err == nil {
			hint = fmt.Sprintf(" (a bus socket exists: export DBUS_SESSION_BUS_ADDRESS=unix:path=%s)", filepath.Join(x, "bus"))
		}
	}
	return fmt.Errorf("no D-Bus session bus: DBUS_SESSION_BUS_ADDRESS is unset and %s does not exist%s: start a desktop session, or start gnome-keyring in a dbus-run-session",
		filepath.Join(dir, "bus"), hint)
}
