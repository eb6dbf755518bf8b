//go:build !windows

package tieredtest

import (
	"context"

	"github.com/msalcache/msalcache/distributed"
)

// Scan lets Reseal list the keys of a counted layer (not counted: the
// tests count the Cache's calls).
func (c *counted) Scan(ctx context.Context, prefix, cursor string, n int) ([]string, string, error) {
	return c.inner.(distributed.Scanner).Scan(ctx, prefix, cursor, n)
}
