package persistence

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/msalcache/msalcache/lock"
)

// Creating the key is serialized among all the user's processes. Without it
// two processes that find no key at the same moment each store one: the
// keyring keeps the last (neither Secret Service nor go-keyring's Keychain
// calls refuse to overwrite an item), and a file sealed with the first is
// lost. Holding the lock, a process reads the item again and creates the
// key only if it is still missing, so an item gets one key, ever.
//
// The lock must be the same for every process that may create the key of
// an item, whatever their cache files and environments: caches in
// different directories share an item. So it does not live next to a cache
// file. On Linux it is a name on the D-Bus session bus, the bus the Secret
// Service itself is reached on (keylock_bus.go): it needs no directory,
// HOME or not, and the bus frees it when its holder dies. Elsewhere, and
// where the bus refuses the name (a sandbox's filtered bus), it is a lock
// file per item in the user's cache directory (fileCreationLock).

// creationLocker takes the cross-process lock for creating the key of the
// item service/account, waiting for it under ctx.
type creationLocker func(ctx context.Context, service, account string) (unlock func() error, err error)

// itemHash names an item in lock names: its names may hold characters no
// file or bus name can.
func itemHash(service, account string) string {
	sum := sha256.Sum256([]byte(service + "\x00" + account))
	return hex.EncodeToString(sum[:8])
}

// keyLockPath is the lock file for creating the key of the item
// service/account: "<user cache dir>/msalcache/key-<hash of the item>.lockfile".
func keyLockPath(service, account string) (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no per-user directory for the lock file that serializes creating the key: %w", err)
	}
	return filepath.Join(dir, "msalcache", "key-"+itemHash(service, account)+".lockfile"), nil
}

// fileCreationLock is the lock file of keyLockPath.
func fileCreationLock(ctx context.Context, service, account string) (unlock func() error, err error) {
	path, err := keyLockPath(service, account)
	if err != nil {
		return nil, err
	}
	return lockFile(ctx, path)
}

// lockFile takes the lock file at path, creating its directory (0700).
func lockFile(ctx context.Context, path string) (unlock func() error, err error) {
	if err := makeDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("the directory of the key creation lock: %w", err)
	}
	l := lock.New(path)
	release, err := l.Lock(ctx)
	if err != nil {
		l.Close()
		return nil, err
	}
	return func() error {
		err := release()
		l.Close() // the key is created once: keep no descriptor for it
		return err
	}, nil
}

// lockCreation takes the cross-process lock for creating p's key. Failing
// to take it is an error wrapping ErrUnavailable: the key cannot be made,
// so the protection cannot be used (WithPlaintextFallback applies).
func (p *keyringProtector) lockCreation(ctx context.Context) (unlock func() error, err error) {
	unlock, err = p.creationLock(ctx, p.service, p.account)
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			return nil, fmt.Errorf("waiting for other processes that may create the key of %s: %w", p.item(p.account), err)
		}
		return nil, fmt.Errorf("%w: %s: waiting for other processes that may create the key of %s: %w", ErrUnavailable, p.name, p.item(p.account), err)
	}
	return unlock, nil
}
