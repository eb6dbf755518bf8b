package pgstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Scan implements distributed.Scanner by keyset pagination on the primary
// key: live keys that start with prefix, in key order (collation "C"),
// after cursor, which is the last key of the previous batch. Each batch is
// one query.
func (s *Store) Scan(ctx context.Context, prefix, cursor string, n int) ([]string, string, error) {
	if n <= 0 {
		return nil, "", fmt.Errorf("pgstore: Scan: batch size %d: must be positive", n)
	}
	if s.closed.Load() {
		return nil, "", errClosed
	}
	rows, err := s.pool.Query(ctx, s.q.scan, prefix, cursor, n)
	if err != nil {
		return nil, "", s.wrap("scan", err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, "", s.wrap("scan", err)
	}
	if len(keys) < n {
		return keys, "", nil
	}
	return keys, keys[len(keys)-1], nil
}
