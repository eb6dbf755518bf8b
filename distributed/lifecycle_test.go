package distributed

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
)

// TestCacheClose: a second Close returns nil; every other call after Close
// returns an error wrapping net.ErrClosed (and ErrClosed).
func TestCacheClose(t *testing.T) {
	c, err := New(NewMemoryStore())
	if err != nil {
		t.Fatal(err)
	}
	m := &manager{}
	write(t, c, m, "home1", "t1")
	if err := c.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("a second Close = %v; want nil", err)
	}
	ctx := context.Background()
	for name, err := range map[string]error{
		"Replace":                  c.Replace(ctx, m, cache.ReplaceHints{PartitionKey: "home1"}),
		"Export":                   c.Export(ctx, m, cache.ExportHints{PartitionKey: "home1"}),
		"Replace of a new manager": c.Replace(ctx, &manager{}, cache.ReplaceHints{PartitionKey: "home1"}),
		"RemovePartition":          c.RemovePartition(ctx, "home1"),
	} {
		if !errors.Is(err, net.ErrClosed) || !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v; want an error wrapping net.ErrClosed", name, err)
		}
	}
}

// sharedStore is a memory store that says it is shared, as a Redis or
// PostgreSQL store does.
type sharedStore struct {
	innerStore
	shared bool
}

// innerStore names Store for embedding: a field named Store would hide
// the method.
type innerStore = Store

func (s sharedStore) Shared() bool { return s.shared }

// TestSharedStoreInClearWarns: New logs one warning for a shared store
// without encryption keys, and none with keys or for a store that is not
// shared.
func TestSharedStoreInClearWarns(t *testing.T) {
	for _, tc := range []struct {
		name   string
		store  Store
		keys   bool
		warned bool
	}{
		{"shared, in clear", sharedStore{NewMemoryStore(), true}, false, true},
		{"shared, encrypted", sharedStore{NewMemoryStore(), true}, true, false},
		{"says not shared", sharedStore{NewMemoryStore(), false}, false, false},
		{"memory store", NewMemoryStore(), false, false},
		{"Tiered, one layer shared", Tiered(NewMemoryStore(), sharedStore{NewMemoryStore(), true}), false, true},
		{"Tiered, no layer shared", Tiered(NewMemoryStore(), NewMemoryStore()), false, false},
	} {
		t.Cleanup(func() { tc.store.Close() })
		var buf bytes.Buffer
		opts := []Option{WithLogger(slog.New(slog.NewTextHandler(&buf, nil)))}
		if tc.keys {
			opts = append(opts, WithEncryptionKeys(bytes.Repeat([]byte{7}, 32)))
		}
		newCache(t, tc.store, opts...)
		n := strings.Count(buf.String(), "level=WARN")
		if warned := n > 0 && strings.Contains(buf.String(), "WithEncryptionKeys"); warned != tc.warned || n > 1 {
			t.Errorf("%s: New logged %q; want a warning: %v", tc.name, buf.String(), tc.warned)
		}
	}
}
