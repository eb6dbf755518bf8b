//go:build !(linux || freebsd || netbsd || openbsd || dragonfly)

package persistence

import "context"

// platformCreationLock is the lock file (keylock.go).
func platformCreationLock(ctx context.Context, service, account string) (unlock func() error, err error) {
	return fileCreationLock(ctx, service, account)
}
