//go:build linux || freebsd || netbsd || openbsd || dragonfly

package persistence

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/godbus/dbus/v5"
)

// platformCreationLock is the name on the session bus, or the lock file
// where the bus cannot give it (none, or a sandbox's filtered bus that
// refuses the name).
func platformCreationLock(ctx context.Context, service, account string) (unlock func() error, err error) {
	unlock, err = busCreationLock(ctx, service, account)
	if err == nil || ctx.Err() != nil {
		return unlock, err
	}
	unlock, ferr := fileCreationLock(ctx, service, account)
	if ferr != nil {
		return nil, fmt.Errorf("neither the session bus (%w) nor a lock file (%w) could serialize it", err, ferr)
	}
	return unlock, nil
}

// keyLockName is the bus name that serializes creating the key of the item
// service/account. Any one connection to the bus may own it at a time; the
// bus frees it when that connection closes, so also when its process dies.
func keyLockName(service, account string) string {
	return "org.msalcache.KeyCreation.k" + itemHash(service, account)
}

// busCreationLock owns keyLockName on a private connection to the session
// bus, polling (with jitter) while another connection owns it. Unlock
// closes the connection, which frees the name.
func busCreationLock(ctx context.Context, service, account string) (unlock func() error, err error) {
	if err := sessionBusCheck(); err != nil {
		return nil, err
	}
	conn, err := connectBus(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting to the D-Bus session bus: %w", err)
	}
	name := keyLockName(service, account)
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		var reply uint32
		err := conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.RequestName", 0,
			name, uint32(dbus.NameFlagDoNotQueue)).Store(&reply)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("owning %s on the D-Bus session bus: %w", name, err)
		}
		if dbus.RequestNameReply(reply) == dbus.RequestNameReplyPrimaryOwner {
			return conn.Close, nil
		}
		t := time.NewTimer(delay/2 + rand.N(delay/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			conn.Close()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// connectBus opens a private, authenticated connection to the session bus,
// giving up when ctx ends (a connection made after that is closed).
func connectBus(ctx context.Context) (*dbus.Conn, error) {
	type result struct {
		conn *dbus.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		// Not dbus.WithContext(ctx): that would close the connection, and
		// so free the name, when ctx ends.
		conn, err := dbus.SessionBusPrivateNoAutoStartup()
		if err == nil {
			if err = conn.Auth(nil); err == nil {
				err = conn.Hello()
			}
			if err != nil {
				conn.Close()
				conn = nil
			}
		}
		done <- result{conn, err}
	}()
	select {
	case r := <-done:
		return r.conn, r.err
	case <-ctx.Done():
		go func() {
			if r := <-done; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, ctx.Err()
	}
}
