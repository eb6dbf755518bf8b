package distributed_test

import (
	"context"

	"github.com/msalcache/msalcache/distributed"
)

// Scan lets Reseal list a layer's keys through the wrapper.
func (s shared) Scan(ctx context.Context, prefix, cursor string, n int) ([]string, string, error) {
	return s.inner.(distributed.Scanner).Scan(ctx, prefix, cursor, n)
}
