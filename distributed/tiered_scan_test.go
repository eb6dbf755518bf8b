package distributed_test

import (
	"context"

	"github.com/msalcache/msalcache/distributed"
)

// Scan lets Reseal list a layer's keys through the wrapper.
func (s shared) Scan(ctx context.Context, prefix, cursor string, n int) ([]string, string, error) {
	return s.inner.(distributed.Scanner).Scan(ctx, prefix, cursor, n)
}

// Scan lets Reseal list the keys of a hooked layer (the hooks are for the
// Cache's calls).
func (h *hooked) Scan(ctx context.Context, prefix, cursor string, n int) ([]string, string, error) {
	return h.inner.(distributed.Scanner).Scan(ctx, prefix, cursor, n)
}
