package distributed

import (
	"context"
	"fmt"
)

// Scan implements Scanner on the second layer, which holds the truth (the
// first may have lost keys, or hold copies of expired ones). It returns an
// error if the second layer is not a Scanner.
func (t *tiered) Scan(ctx context.Context, prefix, cursor string, n int) ([]string, string, error) {
	if t.closed.Load() {
		return nil, "", ErrClosed
	}
	sc, ok := t.second.(Scanner)
	if !ok {
		return nil, "", fmt.Errorf("distributed: Tiered: the second layer %T cannot list its keys (it does not implement Scanner)", t.second)
	}
	return sc.Scan(ctx, prefix, cursor, n)
}
