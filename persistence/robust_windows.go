package persistence

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/windows"
)

// On Windows a file that another process has open without FILE_SHARE_DELETE
// cannot be renamed over or removed, and a file being replaced cannot be
// opened for a moment: those errors are transient. Retry them with jittered
// exponential backoff, for at most robustTimeout (like cmd/go's robustio).
const robustTimeout = 2 * time.Second

func openRead(ctx context.Context, path string) (f *os.File, err error) {
	err = retry(ctx, func() error {
		f, err = os.Open(path)
		return err
	})
	return f, err
}

func rename(ctx context.Context, oldpath, newpath string) error {
	return retry(ctx, func() error { return os.Rename(oldpath, newpath) })
}

func remove(ctx context.Context, path string) error {
	return retry(ctx, func() error { return os.Remove(path) })
}

func retry(ctx context.Context, op func() error) error {
	deadline := time.Now().Add(robustTimeout)
	delay := time.Millisecond
	for {
		err := op()
		if err == nil || !transient(err) {
			return err
		}
		// Sleep between delay/2 and delay.
		d := delay/2 + rand.N(delay/2+1)
		if time.Now().Add(d).After(deadline) {
			return err
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}

func transient(err error) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	switch errno {
	case windows.ERROR_ACCESS_DENIED, windows.ERROR_SHARING_VIOLATION, windows.ERROR_LOCK_VIOLATION:
		return true
	}
	return false
}
