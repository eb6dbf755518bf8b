//go:build !(linux || freebsd || netbsd || openbsd || dragonfly)

package persistence

// sessionBusCheck: the keyring here needs no D-Bus session bus.
func sessionBusCheck() error { return nil }
