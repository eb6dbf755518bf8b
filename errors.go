package msalcache

import (
	"errors"
	"fmt"

	"github.com/msalcache/msalcache/persistence"
)

// advise adds to an error from persistence what only this package's users
// can do about it: persistence names the fix on the system (install, start or
// unlock a keyring), this package the options that work around it.
func advise(err error) error {
	if errors.Is(err, persistence.ErrUnavailable) {
		return fmt.Errorf("%w; or use WithPlaintextFallback to store the cache unencrypted (0600) while the protection is unavailable, or WithKeyringItem to use another keyring item", err)
	}
	return err
}
