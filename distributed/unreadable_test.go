package distributed

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"

	"github.com/msalcache/msalcache/internal/msaljson"
	"github.com/msalcache/msalcache/internal/recordfmt"
	"github.com/msalcache/msalcache/internal/seal"
)

// logRecords keeps the log records of a Cache.
type logRecords struct {
	mu   sync.Mutex
	msgs []string
}

func (h *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecords) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool { msg += " " + a.Key + "=" + a.Value.String(); return true })
	h.msgs = append(h.msgs, msg)
	return nil
}
func (h *logRecords) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecords) WithGroup(string) slog.Handler      { return h }

func (h *logRecords) count(contains string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.msgs {
		if strings.Contains(m, contains) {
			n++
		}
	}
	return n
}

// TestWriterNeverOverwritesWhatItCannotRead: for each kind of stored value
// a Cache cannot read, a write (what MSAL does after getting a token) is
// withheld or overwrites it, as the package doc says; a sign-out always
// writes its tombstone; Reseal counts each as NoKey and leaves it byte for
// byte; and the warning for unreadable values is logged once per cause.
func TestWriterNeverOverwritesWhatItCannotRead(t *testing.T) {
	raw := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	kOld, kNew, kOther := raw(1), raw(2), raw(3)
	keysOf := func(k ...[]byte) *seal.Keys {
		s, err := seal.New(k...)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	const prefix = "p:"
	js, err := msaljson.Parse([]byte(`{"AccessToken":{"theirs":{"home_account_id":"uid.tid","client_id":"app","realm":"tid","secret":"theirs"}}}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	live := recordfmt.Header{Gen: 5, At: time.UnixMilli(1_796_000_000_000)}
	// Each value as stored at skey.
	tampered := func(skey string) []byte {
		v := recordfmt.Seal(live, js.Raw, skey, keysOf(kOld))
		v[len(v)-1] ^= 1
		return v
	}
	newer := func(skey string) []byte {
		v := recordfmt.Seal(live, js.Raw, skey, nil)
		v[0]++ // the next format version
		return keysOf(kOld).Seal(v, []byte(skey))
	}
	cases := []struct {
		name      string
		value     func(skey string) []byte
		keys      [][]byte // the writer's
		overwrite bool
	}{
		{"sealed with a key the writer lacks", func(s string) []byte { return recordfmt.Seal(live, js.Raw, s, keysOf(kNew, kOld)) }, [][]byte{kOld}, false},
		{"sealed, the writer has no keys", func(s string) []byte { return recordfmt.Seal(live, js.Raw, s, keysOf(kNew)) }, nil, false},
		{"tombstone sealed with a key the writer lacks", func(s string) []byte {
			return recordfmt.Seal(recordfmt.Header{Gen: 6, Removed: true, At: live.At}, nil, s, keysOf(kNew))
		}, [][]byte{kOld}, false},
		{"a newer format", newer, [][]byte{kOld}, false},
		{"a newer format, plain", func(s string) []byte {
			v := recordfmt.Seal(live, js.Raw, s, nil)
			v[0]++
			return v
		}, nil, false},
		{"tampered under the writer's key", tampered, [][]byte{kOld}, true},
		{"sealed for another store key", func(string) []byte { return recordfmt.Seal(live, js.Raw, prefix+"elsewhere", keysOf(kOld)) }, [][]byte{kOld}, true},
		{"plain, the writer has keys", func(s string) []byte { return recordfmt.Seal(live, js.Raw, s, nil) }, [][]byte{kOld}, true},
		{"not a record", func(string) []byte { return []byte(`{"AccessToken":{}}`) }, [][]byte{kOld}, true},
	}
	ctx := context.Background()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			store := NewMemoryStore()
			defer store.Close()
			logs := &logRecords{}
			opts := []Option{WithKeyPrefix(prefix), WithLogger(slog.New(logs))}
			if c.keys != nil {
				opts = append(opts, WithEncryptionKeys(c.keys...))
			}
			w := newCache(t, store, opts...)
			homes := []string{"uid.tid", "uid2.tid"}
			before := map[string][]byte{}
			for _, home := range homes {
				skey := recordfmt.StoreKey(prefix, home)
				before[home] = c.value(skey)
				if err := store.Store(ctx, skey, before[home], 0, NewVersion(), time.Hour); err != nil {
					t.Fatal(err)
				}
			}
			// Reseal, with keys that open none of them, counts each and
			// leaves it byte for byte.
			res, err := Reseal(ctx, store, ResealRun{}, WithKeyPrefix(prefix), WithEncryptionKeys(kOther, kOld))
			if err != nil || res.NoKey != len(homes) || res.Visited != len(homes) {
				t.Errorf("Reseal = %+v, %v; want NoKey %d", res, err, len(homes))
			}
			for _, home := range homes {
				if v, _, err := store.Load(ctx, recordfmt.StoreKey(prefix, home)); err != nil || !bytes.Equal(v, before[home]) {
					t.Errorf("Reseal changed %s (%v)", home, err)
				}
			}

			// Two users get a token on the writer, each in two writes.
			// Export says so when it withholds a write: the tokens are
			// not stored.
			for _, home := range homes {
				m := &manager{}
				for _, name := range []string{"ours", "ours2"} {
					if err := w.Replace(ctx, m, cache.ReplaceHints{PartitionKey: home}); err != nil {
						t.Fatal(err)
					}
					m.add(t, home, name)
					err := w.Export(ctx, m, cache.ExportHints{PartitionKey: home})
					if c.overwrite && err != nil || !c.overwrite && !errors.Is(err, errWithheld) {
						t.Errorf("Export = %v; want %v", err, map[bool]any{true: "nil", false: errWithheld}[c.overwrite])
					}
				}
			}
			st := w.Stats()
			for _, home := range homes {
				after, _, err := store.Load(ctx, recordfmt.StoreKey(prefix, home))
				if err != nil {
					t.Fatal(err)
				}
				kept := bytes.Equal(after, before[home])
				if !c.overwrite && !kept {
					t.Errorf("%s: overwritten", home)
				}
				if c.overwrite && kept {
					t.Errorf("%s: not overwritten", home)
				}
			}
			if !c.overwrite && (st.Withheld != 2*int64(len(homes)) || st.Writes != 0 || st.Pending != 0) {
				t.Errorf("stats %+v; want Withheld %d, no write, nothing kept", st, 2*len(homes))
			}
			if c.overwrite && (st.Withheld != 0 || st.Writes != 2*int64(len(homes))) {
				t.Errorf("stats %+v; want Writes %d, nothing withheld", st, 2*len(homes))
			}
			if n := logs.count("cannot read"); !c.overwrite && n != 1 {
				t.Errorf("%d warnings that partitions cannot be read; want 1 (once per cause)", n)
			}
			for _, m := range logs.msgs {
				if strings.Contains(m, "secret") || strings.Contains(m, "theirs") {
					t.Errorf("a log record shows a value: %s", m)
				}
			}

			// A sign-out writes its tombstone over whatever is stored.
			if err := w.RemovePartition(ctx, homes[0]); err != nil {
				t.Fatal(err)
			}
			v, _, _ := store.Load(ctx, recordfmt.StoreKey(prefix, homes[0]))
			var k *seal.Keys
			if c.keys != nil {
				k = keysOf(c.keys...)
			}
			if h, _, err := recordfmt.Open(v, recordfmt.StoreKey(prefix, homes[0]), k); err != nil || !h.Removed {
				t.Errorf("after RemovePartition the store holds %+v, %v; want a tombstone", h, err)
			}
			var m manager
			if err := w.Replace(ctx, &m, cache.ReplaceHints{PartitionKey: homes[1]}); err != nil {
				t.Fatal(err)
			}
			if !c.overwrite && m.has(homes[1], "ours") {
				t.Error("a withheld write is served from the store")
			}
		})
	}
}

// TestKeptWriteOverWhatItCannotReadIsNotRetried: a write kept during an
// outage, whose partition another replica meanwhile sealed with a key this
// Cache lacks, is withheld at the write-back and not kept again: nothing
// stays pending, and the stored partition is unchanged.
func TestKeptWriteOverWhatItCannotReadIsNotRetried(t *testing.T) {
	kOld, kNew := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	ctx := context.Background()
	inner := NewMemoryStore()
	defer inner.Close()
	f := &flaky{inner: inner}
	c := newCache(t, f, WithEncryptionKeys(kOld), WithTimeout(time.Second))
	f.set(true)
	m := &manager{}
	write(t, c, m, "uid.tid", "kept")
	if st := c.Stats(); st.Pending != 1 {
		t.Fatalf("stats %+v; want the write kept", st)
	}
	// Meanwhile a replica on [new, old] writes the partition.
	other := newCache(t, inner, WithEncryptionKeys(kNew, kOld))
	write(t, other, &manager{}, "uid.tid", "theirs")
	skey := other.storeKey("uid.tid")
	before, _, err := inner.Load(ctx, skey)
	if err != nil {
		t.Fatal(err)
	}
	f.set(false)
	waitWrittenBack(t, c)
	if st := c.Stats(); st.Withheld != 1 || st.Pending != 0 {
		t.Errorf("stats %+v; want Withheld 1, nothing pending", st)
	}
	if after, _, err := inner.Load(ctx, skey); err != nil || !bytes.Equal(after, before) {
		t.Errorf("the partition sealed with the new key was overwritten (%v)", err)
	}
}
