package persistence

import (
	"testing"

	"github.com/msalcache/msalcache/internal/coarsefs"
)

// TestWriteStampPastReadersCoarse: checkStampPastReaders on file systems
// with coarse timestamps, where the kernel stamps a file with a time before
// the wall clock a reader read right after its own write: ext2 from the
// coarse clock (a tick behind), and ext2 with whole seconds.
func TestWriteStampPastReadersCoarse(t *testing.T) {
	if coarsefs.InNamespace(t, "TestWriteStampPastReadersCoarse") {
		for _, g := range []coarsefs.Grain{coarsefs.Tick, coarsefs.Second} {
			t.Run(g.String(), func(t *testing.T) { checkStampPastReaders(t, coarsefs.Dir(t, g), g == coarsefs.Second) })
		}
	}
}
