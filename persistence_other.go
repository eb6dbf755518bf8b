//go:build !linux && !darwin && !windows

package msalcache

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/msalcache/msalcache/persistence"
)

// platformProtector: msalcache knows no OS protection here. The error wraps
// persistence.ErrUnavailable, so WithPlaintextFallback applies, and
// errors.ErrUnsupported.
func platformProtector(*config) (persistence.Protector, error) {
	return nil, fmt.Errorf("%w: no platform protection on %s (%w): use WithPlaintext or WithPlaintextFallback",
		persistence.ErrUnavailable, runtime.GOOS, errors.ErrUnsupported)
}
