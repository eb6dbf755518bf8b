package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/persistence"
)

func cmdDoctor(ctx context.Context, e *env, args []string) error {
	var o options
	f := newFlags(e, "doctor", "[flags]", `
Reports what this machine offers to protect the token cache and what the cache
uses: the OS, the protection (dpapi, keychain, secret-service or plaintext) and
whether it works (a probe is written, read and deleted; the cache file is never
touched), the cache and lock files with their permissions, and on Linux
whether a D-Bus session and a Secret Service are present, with what to
install when they are not. Exit status 0 means the cache is healthy, 4 that it
is not (no usable protection, or unsafe permissions). Falling back to
plaintext counts as unhealthy; --plaintext (chosen on purpose) does not.`)
	f.cacheFlags(&o)
	if err := f.parseNoArgs(args); err != nil {
		return err
	}
	if err := f.checkCache(&o); err != nil {
		return err
	}
	d := doctor{w: e.stdout, getenv: e.getenv}
	d.check(ctx, &o)
	if len(d.problems) > 0 {
		return &exitErr{exitUnhealthy, fmt.Errorf("the token cache is not healthy: %s", strings.Join(d.problems, "; "))}
	}
	return nil
}

type doctor struct {
	w        io.Writer
	getenv   func(string) string
	problems []string
	noBus    bool // no session bus was found
}

func (d *doctor) line(key, format string, a ...any) {
	fmt.Fprintf(d.w, "%-16s %s\n", key, fmt.Sprintf(format, a...))
}

func (d *doctor) problem(p string) { d.problems = append(d.problems, p) }

func (d *doctor) check(ctx context.Context, o *options) {
	fmt.Fprintln(d.w, "cli-login doctor: the token cache on this machine")
	d.line("OS", "%s/%s", runtime.GOOS, runtime.GOARCH)
	path, err := filepath.Abs(o.cachePath)
	if err != nil {
		path = o.cachePath
	}
	d.files(path)
	usesBus := runtime.GOOS != "windows" && runtime.GOOS != "darwin" && !o.plaintext
	if usesBus {
		d.sessionBus()
	}

	// Settle the protection as the other commands do, but without the
	// fallback: doctor reports what the platform offers.
	opts := o.cacheOptions(slog.New(slog.DiscardHandler))
	if o.plaintextFallback && !o.plaintext {
		fallback := *o
		fallback.plaintextFallback = false
		opts = fallback.cacheOptions(slog.New(slog.DiscardHandler))
	}
	opts = append(opts, msalcache.WithLockTimeout(10*time.Second))
	start := time.Now()
	c, err := msalcache.New(path, opts...)
	took := time.Since(start).Round(time.Millisecond)
	if err != nil {
		switch {
		case usesBus && d.noBus:
			d.line("Secret Service", "not reachable: no session bus")
		case usesBus && runtime.GOOS == "linux":
			d.line("Secret Service", "UNAVAILABLE (the reason is below)")
		}
		d.line("protection", "UNAVAILABLE after %s: %s", took, oneLine(err.Error()))
		if o.plaintextFallback {
			d.line("", "with --plaintext-fallback the commands store the cache UNENCRYPTED (0600)")
		}
		d.problem("the platform protection is unavailable")
		if errors.Is(err, persistence.ErrUnavailable) {
			d.advice()
		}
		d.result()
		return
	}
	defer c.Close()
	if c.Protection() == "secret-service" {
		d.line("Secret Service", "available (keyring item %s)", keyringItemName(o))
	}
	d.line("protection", "%s: %s (settled in %s)", c.Protection(), describeProtection(c.Protection()), took)
	vctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	start = time.Now()
	if err := c.Verify(vctx); err != nil {
		d.line("verify", "FAILED: %s", oneLine(err.Error()))
		d.problem("the protection does not work end to end")
		if errors.Is(err, persistence.ErrUnavailable) {
			d.advice()
		}
	} else {
		d.line("verify", "ok: a probe was written, read back and deleted in %s", time.Since(start).Round(time.Millisecond))
	}
	d.result()
}

func (d *doctor) result() {
	if len(d.problems) == 0 {
		d.line("result", "healthy")
		return
	}
	d.line("result", "NOT HEALTHY")
}

func keyringItemName(o *options) string {
	if o.keyringItem != "" {
		return o.keyringItem
	}
	return persistence.DefaultKeyringService + "/" + persistence.DefaultKeyringAccount
}

// files reports the cache file, its directory and the lock file.
func (d *doctor) files(path string) {
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil {
		d.line("cache directory", "%s: %s", dir, statError(err, "created (0700) on the first sign-in"))
	} else {
		d.line("cache directory", "%s: %s", dir, permissions(fi))
		if runtime.GOOS != "windows" && fi.Mode().Perm()&0o022 != 0 {
			d.problem(fmt.Sprintf("the cache directory %s is writable by group or others (chmod go-w, or choose another --cache)", dir))
		}
	}
	if fi, err := os.Stat(path); err != nil {
		d.line("cache file", "%s: %s", path, statError(err, "not created yet (signed out, or never signed in)"))
	} else {
		d.line("cache file", "%s: %s, %d bytes, modified %s", path, permissions(fi), fi.Size(), fi.ModTime().Format(time.RFC3339))
		if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
			d.problem(fmt.Sprintf("the cache file %s is readable by group or others (chmod 600)", path))
		}
	}
	lockPath := path + ".lockfile"
	fi, err := os.Stat(lockPath)
	if err != nil {
		d.line("lock file", "%s: %s", lockPath, statError(err, "absent (no process holds the lock)"))
		return
	}
	holder := "no pid in it"
	if b, err := readHead(lockPath, 256); err == nil {
		if f := strings.Fields(strings.Trim(string(b), "{} \t\r\n")); len(f) > 0 {
			if pid, err := strconv.Atoi(strings.Trim(f[0], "{}")); err == nil {
				holder = "pid " + strconv.Itoa(pid)
			}
		}
	}
	d.line("lock file", "%s: %s, %s, %s old (a process holds the lock now; a crashed holder's lock is recovered by the next process)",
		lockPath, permissions(fi), holder, time.Since(fi.ModTime()).Round(time.Second))
}

func statError(err error, absent string) string {
	if errors.Is(err, fs.ErrNotExist) {
		return absent
	}
	return oneLine(err.Error())
}

func permissions(fi fs.FileInfo) string {
	if runtime.GOOS == "windows" {
		return "exists (Windows ACLs: the user profile's)"
	}
	return fmt.Sprintf("mode %04o", fi.Mode().Perm())
}

func readHead(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	k, err := io.ReadFull(f, b)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		err = nil
	}
	return b[:k], err
}

// sessionBus reports whether a D-Bus session bus can be found the way the
// Secret Service client finds it: DBUS_SESSION_BUS_ADDRESS, or the per-user
// bus socket.
func (d *doctor) sessionBus() {
	if a := d.getenv("DBUS_SESSION_BUS_ADDRESS"); a != "" && a != "autolaunch:" {
		d.line("D-Bus session", "present (DBUS_SESSION_BUS_ADDRESS is set)")
		return
	}
	var sockets []string
	if x := d.getenv("XDG_RUNTIME_DIR"); x != "" {
		sockets = append(sockets, filepath.Join(x, "bus"))
	}
	sockets = append(sockets, filepath.Join("/run/user", strconv.Itoa(os.Getuid()), "bus"))
	for _, s := range sockets {
		if _, err := os.Stat(s); err == nil {
			d.line("D-Bus session", "a bus socket exists at %s (if it is not found, export DBUS_SESSION_BUS_ADDRESS=unix:path=%s)", s, s)
			return
		}
	}
	d.noBus = true
	d.line("D-Bus session", "ABSENT: DBUS_SESSION_BUS_ADDRESS is unset and no bus socket exists (%s)", strings.Join(sockets, ", "))
}

// advice says what to install or do when the platform protection is
// unavailable.
func (d *doctor) advice() {
	fmt.Fprintln(d.w, "\nWhat to do:")
	switch runtime.GOOS {
	case "windows":
		fmt.Fprint(d.w, `  - DPAPI needs a loaded user profile: services and scheduled tasks that run
    without one cannot use it. Run as a user whose profile is loaded.
  - Or accept an unencrypted cache file (this user only): --plaintext-fallback
    (MSALCACHE_PLAINTEXT_FALLBACK=1).
`)
	case "darwin":
		fmt.Fprint(d.w, `  - Unlock the login keychain: security unlock-keychain login.keychain-db
    (over SSH it stays locked until you do). If macOS asks whether this program
    may use the item "msalcache", choose Always Allow.
  - Or accept an unencrypted cache file (0600, this user only): --plaintext-fallback
    (MSALCACHE_PLAINTEXT_FALLBACK=1).
`)
	default:
		fmt.Fprint(d.w, `  - Desktop: install and unlock a Secret Service provider: gnome-keyring
    (Debian/Ubuntu: sudo apt-get install gnome-keyring) or KeePassXC with
    "Secret Service integration" enabled, then log in to the desktop again.
  - Headless (SSH, containers, WSL, CI): run the program in a D-Bus session
    with an unlocked keyring (packages dbus-daemon and gnome-keyring):
      dbus-run-session -- sh -c 'echo "$KEYRING_PASSWORD" |
        gnome-keyring-daemon --unlock --components=secrets >/dev/null; cli-login login ...'
  - Or accept an unencrypted cache file (0600, this user only): --plaintext-fallback
    (MSALCACHE_PLAINTEXT_FALLBACK=1), or --plaintext on purpose.
`)
	}
}
