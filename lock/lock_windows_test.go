package lock

import (
	"context"
	"errors"
	"testing"
	"time"

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
