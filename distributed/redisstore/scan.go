package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/rueidis"

	"github.com/msalcache/msalcache/distributed"
)

// Scan implements distributed.Scanner with SCAN MATCH prefix*: on a
// standalone server or the master that Sentinel names, one SCAN; on a
// cluster, every master in turn, in the order of their addresses. The
// cursor is SCAN's, and on a cluster "cursor@address" of the master being
// scanned. SCAN may return a key twice; a cluster whose masters change
// during a scan (a failover, a resharding) may have keys missed: run the
// scan again after one.
func (s *Store) Scan(ctx context.Context, prefix, cursor string, n int) ([]string, string, error) {
	if n <= 0 {
		return nil, "", fmt.Errorf("redisstore: Scan: batch size %d: must be positive", n)
	}
	if s.closed.Load() {
		return nil, "", distributed.ErrClosed
	}
	c, err := s.conn(ctx)
	if err != nil {
		return nil, "", err
	}
	match := globEscape(prefix) + "*"
	if c.Mode() != rueidis.ClientModeCluster {
		at, err := parseCursor(cursor)
		if err != nil {
			return nil, "", err
		}
		keys, next, err := scanNode(ctx, c, at, match, n)
		if err != nil {
			return nil, "", s.wrap("scan", err)
		}
		if next == 0 {
			return keys, "", nil
		}
		return keys, strconv.FormatUint(next, 10), nil
	}

	masters, nodes, err := clusterMasters(ctx, c)
	if err != nil {
		return nil, "", s.wrap("scan", err)
	}
	i, at := 0, uint64(0)
	if cursor != "" {
		num, addr, ok := strings.Cut(cursor, "@")
		if !ok {
			return nil, "", fmt.Errorf("redisstore: Scan: cursor %q is not a cluster cursor (cursor@address)", cursor)
		}
		if at, err = parseCursor(num); err != nil {
			return nil, "", err
		}
		// The master being scanned, or the next one if it is gone.
		i, _ = slices.BinarySearch(masters, addr)
		if i == len(masters) || masters[i] != addr {
			at = 0
		}
	}
	if i == len(masters) {
		return nil, "", nil
	}
	keys, next, err := scanNode(ctx, nodes[masters[i]], at, match, n)
	if err != nil {
		return nil, "", s.wrap("scan", err)
	}
	switch {
	case next != 0:
		return keys, strconv.FormatUint(next, 10) + "@" + masters[i], nil
	case i+1 < len(masters):
		return keys, "0@" + masters[i+1], nil
	default:
		return keys, "", nil
	}
}

// scanNode is one SCAN on the node c.
func scanNode(ctx context.Context, c rueidis.Client, cursor uint64, match string, n int) ([]string, uint64, error) {
	if c == nil {
		return nil, 0, errors.New("the cluster's master changed during the scan")
	}
	e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(match).Count(int64(n)).Build()).AsScanEntry()
	if err != nil {
		return nil, 0, err
	}
	return e.Elements, e.Cursor, nil
}

// clusterMasters returns the addresses of the cluster's masters, sorted
// (the nodes that say ROLE master), and the clients of its nodes.
func clusterMasters(ctx context.Context, c rueidis.Client) ([]string, map[string]rueidis.Client, error) {
	var masters []string
	nodes := c.Nodes()
	for addr, node := range nodes {
		role, err := node.Do(ctx, node.B().Role().Build()).ToArray()
		if err != nil {
			return nil, nil, fmt.Errorf("ROLE on %s: %w", addr, err)
		}
		if len(role) > 0 {
			if r, err := role[0].ToString(); err == nil && r == "master" {
				masters = append(masters, addr)
			}
		}
	}
	if len(masters) == 0 {
		return nil, nil, errors.New("no master in the cluster")
	}
	slices.Sort(masters)
	return masters, nodes, nil
}

func parseCursor(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("redisstore: Scan: cursor %q is not a Redis cursor", s)
	}
	return n, nil
}

// globEscape escapes the characters that MATCH reads as a pattern.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\^`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
