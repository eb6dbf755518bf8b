package msalcache

import "github.com/msalcache/msalcache/persistence"

// platformProtector: on Windows, DPAPI for the current user, the format every
// sister library writes.
func platformProtector(*config) (persistence.Protector, error) {
	return persistence.DPAPI(), nil
}
