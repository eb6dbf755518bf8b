//go:build !darwin

package persistence

import (
	"fmt"
	"strings"
)

// keyringHint explains a failed Secret Service call. go-keyring returns
// godbus errors and plain strings, so the text is all there is to go by.
func keyringHint(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "org.freedesktop.secrets") || strings.Contains(msg, "ServiceUnknown"):
		return fmt.Sprintf("no Secret Service on the session bus (%s): install and unlock gnome-keyring or KeePassXC (with its Secret Service integration)", msg)
	case strings.Contains(msg, "failed to unlock") || strings.Contains(msg, "IsLocked"):
		return fmt.Sprintf("the keyring is locked (%s): unlock it (log in to the desktop session, or run `gnome-keyring-daemon --unlock`)", msg)
	case strings.Contains(msg, "dbus-launch") || strings.Contains(msg, "session bus"):
		return fmt.Sprintf("no D-Bus session bus (%s): start a desktop session, or run gnome-keyring in a dbus-run-session", msg)
	}
	return fmt.Sprintf("the Secret Service failed (%s): make sure gnome-keyring or KeePassXC is running and unlocked", msg)
}
