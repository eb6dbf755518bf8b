package persistence

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/msalcache/msalcache/lock"
)

// Creating the key is serialized among all the user's processes by a lock
// file per keyring item, in the user's cache directory. Without it two
// processes that find no key at the same moment each store one: the keyring
// keeps the last (neither Secret Service nor go-keyring's Keychain calls
// refuse to overwrite an item), and a file sealed with the first is lost.
// Holding the lock, a process reads the item again and creates the key only
// if it is still missing, so an item gets one key, ever.

// keyLockPath is the lock file for creating the key of the item
// service/account: "<user cache dir>/msalcache/key-<hash of the item>.lockfile".
// The item's names are hashed: they may hold characters no file name can.
func keyLockPath(service, account string) (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no per-user directory for the lock file that serializes creating the key: %w", err)
	}
	sum := sha256.Sum256([]byte(service + "\x00" + account))
	return filepath.Join(dir, "msalcache", "key-"+hex.EncodeToString(sum[:8])+".lockfile"), nil
}

// lockCreation takes the cross-process lock for creating p's key.
func (p *keyringProtector) lockCreation(ctx context.Context) (unlock func() error, err error) {
	path := p.createLock
	if path == "" {
		if path, err = keyLockPath(p.service, p.account); err != nil {
			return nil, err
		}
	}
	if err := makeDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("the directory of the key creation lock: %w", err)
	}
	l := lock.New(path)
	release, err := l.Lock(ctx)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("waiting for another process that creates the key of %s: %w", p.item(p.account), err)
	}
	return func() error {
		err := release()
		l.Close() // the key is created once: keep no descriptor for it
		return err
	}, nil
}
