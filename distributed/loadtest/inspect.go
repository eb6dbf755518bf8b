package main

import (
	"context"
	"fmt"

	"github.com/redis/rueidis"

	"github.com/msalcache/msalcache/internal/msaljson"
	"github.com/msalcache/msalcache/internal/recordfmt"
	"github.com/msalcache/msalcache/internal/seal"
)

// inspection is what Redis holds after a run.
type inspection struct {
	partitions int // stored partitions with entries
	foreign    int // entries in a partition that belong to another
	unknown    int // stored keys that are no partition of the run
	missing    int // partitions of the run that Redis does not hold
	tombstones int
}

// inspect reads every key of prefix from Redis, bypassing the Cache: each
// value is the 8-byte version (redisstore) and the sealed record
// (internal/recordfmt), checked by check.
func inspect(ctx context.Context, redisURL, prefix string, key []byte, partitions map[string]bool) (inspection, error) {
	client, err := openRaw(redisURL)
	if err != nil {
		return inspection{}, err
	}
	defer client.Close()
	names, err := scan(ctx, client, prefix+"*")
	if err != nil {
		return inspection{}, err
	}
	records := map[string][]byte{}
	for _, skey := range names {
		raw, err := client.Do(ctx, client.B().Get().Key(skey).Build()).AsBytes()
		if rueidis.IsRedisNil(err) {
			continue // expired since the scan
		}
		if err != nil {
			return inspection{}, fmt.Errorf("GET: %w", err)
		}
		if len(raw) < 8 {
			return inspection{}, fmt.Errorf("stored partition %s: %d bytes, no version", skey, len(raw))
		}
		records[skey] = raw[8:]
	}
	return check(records, prefix, key, partitions)
}

// check opens the sealed records (store key -> record) and checks each
// entry: its partition is computed from the entry itself
// (msaljson.Snapshot.Partition) and compared with the partition the key
// belongs to. partitions maps each partition key of the run to whether it
// must be stored.
func check(records map[string][]byte, prefix string, key []byte, partitions map[string]bool) (inspection, error) {
	var in inspection
	keys, err := seal.New(key)
	if err != nil {
		return in, err
	}
	byStoreKey := map[string]string{}
	for p := range partitions {
		byStoreKey[recordfmt.StoreKey(prefix, p)] = p
	}
	seen := map[string]bool{}
	for skey, rec := range records {
		if skey == recordfmt.MarkerKey(prefix) {
			continue // the Cache's marker (it tells a store that lost its data), no partition
		}
		partition, ok := byStoreKey[skey]
		if !ok {
			in.unknown++
			continue
		}
		seen[partition] = true
		h, js, err := recordfmt.Open(rec, skey, keys)
		if err != nil {
			return in, fmt.Errorf("stored partition %s: %w", skey, err)
		}
		if h.Removed {
			in.tombstones++
			continue
		}
		snap, err := msaljson.Parse(js, nil)
		if err != nil {
			return in, fmt.Errorf("stored partition %s: %w", skey, err)
		}
		in.partitions++
		in.foreign += entries(snap) - entries(snap.Partition(partition, nil))
	}
	for p, required := range partitions {
		if required && !seen[p] {
			in.missing++
		}
	}
	return in, nil
}

// entries counts the entries of s that belong to one partition (all but
// the app metadata, which every partition carries).
func entries(s *msaljson.Snapshot) int {
	n := 0
	for name, section := range s.Sections {
		if name != "AppMetadata" {
			n += len(section)
		}
	}
	return n
}

// openRaw connects to Redis without client-side caching.
func openRaw(redisURL string) (rueidis.Client, error) {
	opt, err := rueidis.ParseURL(redisURL)
	if err != nil {
		return nil, err
	}
	opt.DisableCache = true
	return rueidis.NewClient(opt)
}

// scan lists the keys that match pattern.
func scan(ctx context.Context, client rueidis.Client, pattern string) ([]string, error) {
	var names []string
	var cursor uint64
	for {
		e, err := client.Do(ctx, client.B().Scan().Cursor(cursor).Match(pattern).Count(1000).Build()).AsScanEntry()
		if err != nil {
			return nil, fmt.Errorf("SCAN: %w", err)
		}
		names = append(names, e.Elements...)
		cursor = e.Cursor
		if cursor == 0 {
			return names, nil
		}
	}
}

// deleteKeys removes the run's keys from an external Redis.
func deleteKeys(ctx context.Context, redisURL, prefix string) error {
	client, err := openRaw(redisURL)
	if err != nil {
		return err
	}
	defer client.Close()
	names, err := scan(ctx, client, prefix+"*")
	if err != nil {
		return err
	}
	for _, k := range names {
		if err := client.Do(ctx, client.B().Del().Key(k).Build()).Error(); err != nil {
			return fmt.Errorf("DEL: %w", err)
		}
	}
	return nil
}
