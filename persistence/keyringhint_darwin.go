package persistence

import (
	"errors"
	"fmt"
	"os/exec"
)

// keyringHint explains a failed Keychain call. go-keyring runs
// /usr/bin/security, whose exit status is the low byte of the OSStatus.
func keyringHint(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		switch ee.ExitCode() {
		case 36: // errSecInteractionNotAllowed (-25308)
			return "the login keychain is locked or cannot ask the user (e.g. over SSH): unlock it with `security unlock-keychain`"
		case 51: // errSecAuthFailed (-25293)
			return "access to the keychain item was denied: allow this program in Keychain Access"
		case 128: // errSecUserCanceled (-128)
			return "the keychain prompt was cancelled: allow access when asked"
		}
	}
	return fmt.Sprintf("the keychain failed (%v): unlock the login keychain", err)
}
