package lock

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/gofrs/flock"
	"golang.org/x/sys/windows"
)

// unwritableDirs are tried when the ACL set by makeReadOnly is not enforced
// (Wine stores ACLs but does not check them): Wine maps Z: to the Unix root,
// and sysfs refuses new files even to root.
var unwritableDirs = []string{`Z:\sys`}

// makeReadOnly gives dir an ACL that lets the current user read it only.
func makeReadOnly(t *testing.T, dir string) {
	t.Helper()
	setACL := func(access windows.ACCESS_MASK) error {
		u, err := windows.GetCurrentProcessToken().GetTokenUser()
		if err != nil {
			return err
		}
		acl, err := windows.ACLFromEntries([]windows.EXPLICIT_ACCESS{{
			AccessPermissions: access,
			AccessMode:        windows.GRANT_ACCESS,
			Inheritance:       windows.SUB_CONTAINERS_AND_OBJECTS_INHERIT,
			Trustee: windows.TRUSTEE{
				TrusteeForm:  windows.TRUSTEE_IS_SID,
				TrusteeType:  windows.TRUSTEE_IS_USER,
				TrusteeValue: windows.TrusteeValueFromSID(u.User.Sid),
			},
		}}, nil)
		if err != nil {
			return err
		}
		return windows.SetNamedSecurityInfo(dir, windows.SE_FILE_OBJECT,
			windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, acl, nil)
	}
	if err := setACL(windows.GENERIC_READ | windows.GENERIC_EXECUTE); err != nil {
		t.Logf("setting a read-only ACL: %v", err)
		return
	}
	t.Cleanup(func() { setACL(windows.GENERIC_ALL) })
}

// TestDotNetHolder: .NET's MsalCacheHelper opens the lock file with
// FileShare.None and FileOptions.DeleteOnClose. While it holds the file we
// wait; when it closes, we get the lock. While we hold it, its open fails.
func TestDotNetHolder(t *testing.T) {
	path := lockPath(t)
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		t.Fatal(err)
	}
	dotnetOpen := func() (windows.Handle, error) {
		return windows.CreateFile(p, windows.GENERIC_READ|windows.GENERIC_WRITE, 0, nil,
			windows.OPEN_ALWAYS, windows.FILE_ATTRIBUTE_NORMAL|windows.FILE_FLAG_DELETE_ON_CLOSE, 0)
	}
	h, err := dotnetOpen()
	if err != nil {
		t.Fatal(err)
	}
	ch := lockAsync(context.Background(), New(path))
	mustBlock(t, ch, 300*time.Millisecond)
	windows.CloseHandle(h)
	mustGet(t, ch, 2*time.Second)

	h, err = dotnetOpen()
	if err == nil {
		windows.CloseHandle(h)
		t.Fatal(".NET-style open succeeded while we held the lock")
	}
	if !errors.Is(err, windows.ERROR_SHARING_VIOLATION) {
		t.Errorf(".NET-style open while held: %v, want a sharing violation", err)
	}
}

// TestFlockWaiter: gofrs/flock (AzureAD's Go extension) opens the lock file
// without sharing delete access. While we hold the lock, its blocking Lock
// must wait, not fail with a sharing violation; it gets the lock when we
// unlock, and we wait for it in turn. The file it keeps open could not be
// deleted at our unlock: it is left empty and dated in the past, which
// says "no holder", so we adopt it at once when gofrs/flock lets go.
func TestFlockWaiter(t *testing.T) {
	path := lockPath(t)
	unlock, err := New(path).Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	fl := flock.New(path)
	got := make(chan error, 1)
	go func() { got <- fl.Lock() }()
	select {
	case err := <-got:
		unlock()
		if err == nil {
			fl.Unlock()
			t.Fatal("gofrs/flock got the lock while we held it")
		}
		t.Fatalf("gofrs/flock Lock while we held the lock: %v; want it to wait", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := unlock(); err != nil {
		t.Errorf("unlock with a gofrs/flock waiter: %v", err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("gofrs/flock Lock after we unlocked: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("gofrs/flock did not get the lock within 10s of our unlock")
	}
	// gofrs/flock's handle does not share delete access: the file stays.
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 0 || time.Since(fi.ModTime()) < staleEmpty {
		t.Errorf("lock file left at our unlock: %d bytes, modified %v ago; want empty and older than %v",
			fi.Size(), time.Since(fi.ModTime()), staleEmpty)
	}

	ch := lockAsync(context.Background(), New(path))
	mustBlock(t, ch, 300*time.Millisecond)
	released := time.Now()
	if err := fl.Unlock(); err != nil {
		t.Fatal(err)
	}
	r := mustGet(t, ch, 10*time.Second)
	t.Logf("got the lock %v after gofrs/flock let go", r.at.Sub(released))
	fl.Close()
}
