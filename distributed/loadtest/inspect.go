package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/redis/rueidis"

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
// entry against the partition its store key was computed from (see
// foreignEntries). partitions maps each partition key of the run to
// whether it must be stored.
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
		foreign, err := foreignEntries(js, partition)
		if err != nil {
			return in, fmt.Errorf("stored partition %s: %w", skey, err)
		}
		in.partitions++
		in.foreign += foreign
	}
	for p, required := range partitions {
		if required && !seen[p] {
			in.missing++
		}
	}
	return in, nil
}

// appSuffix ends MSAL Go's partition key of app tokens:
// <client_id>_<tenant>[_<ext_cache_key>]_AppTokenCache.
const appSuffix = "_AppTokenCache"

// foreignEntries counts the entries of js (a stored partition's MSAL cache
// JSON) that do not belong to partition, from each entry's own fields, on
// purpose without the writer's partition function (internal/msaljson), so
// that a bug there is caught, not repeated: a user's partition (a home
// account ID) holds only entries whose home_account_id is that ID; an app
// partition only entries without home_account_id whose client_id, realm
// (and ext_cache_key) make its key. No stored partition holds on-behalf-of
// entries (user_assertion_hash): MSAL never hands them to the Cache. App
// metadata (the client's family, no user data) is in every partition.
func foreignEntries(js []byte, partition string) (int, error) {
	var sections map[string]json.RawMessage
	if err := json.Unmarshal(js, &sections); err != nil {
		return 0, fmt.Errorf("not MSAL cache JSON: %w", err)
	}
	n := 0
	for name, raw := range sections {
		if name == "AppMetadata" {
			continue
		}
		var entries map[string]json.RawMessage
		if err := json.Unmarshal(raw, &entries); err != nil {
			return 0, fmt.Errorf("section %q is not an object of entries", name)
		}
		for _, entry := range entries {
			if !owns(partition, entry) {
				n++
			}
		}
	}
	return n, nil
}

// owns reports whether entry belongs to partition (see foreignEntries).
func owns(partition string, entry json.RawMessage) bool {
	var f struct {
		HomeAccountID     string `json:"home_account_id"`
		ClientID          string `json:"client_id"`
		Realm             string `json:"realm"`
		ExtCacheKey       string `json:"ext_cache_key"`
		UserAssertionHash string `json:"user_assertion_hash"`
	}
	if json.Unmarshal(entry, &f) != nil || f.UserAssertionHash != "" {
		return false
	}
	app, isApp := strings.CutSuffix(partition, appSuffix)
	if !isApp {
		return f.HomeAccountID == partition
	}
	want := f.ClientID + "_" + f.Realm
	if f.ExtCacheKey != "" {
		want += "_" + f.ExtCacheKey
	}
	return f.HomeAccountID == "" && f.ClientID != "" && app == want
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
