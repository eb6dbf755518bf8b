package persistence

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/msalcache/msalcache/internal/testdir"
)

// benchJSON returns an MSAL-like JSON document of about size bytes.
func benchJSON(size int) []byte {
	var sb strings.Builder
	sb.WriteString(`{"RefreshToken":{`)
	for i := 0; sb.Len() < size-200; i++ {
		tok := make([]byte, 600)
		_, _ = rand.Read(tok)
		if i > 0 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, `"k%d":{"secret":"%s"}`, i, base64.RawURLEncoding.EncodeToString(tok))
	}
	sb.WriteString(`}}`)
	return []byte(sb.String())
}

var benchSizes = []struct {
	name string
	size int
}{{"10KB", 10 << 10}, {"1MB", 1 << 20}}

// BenchmarkRead compares reading and decoding the cache file with a plain
// os.ReadFile of the same plaintext. The keyring key is cached (in memory), as
// it is after the first call of a process.
func BenchmarkRead(b *testing.B) {
	for _, sz := range benchSizes {
		data := benchJSON(sz.size)
		b.Run(sz.name+"/os.ReadFile", func(b *testing.B) {
			path := filepath.Join(testdir.New(b), "plain.json")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := os.ReadFile(path); err != nil {
					b.Fatal(err)
				}
			}
		})
		for name, p := range map[string]Protector{"plaintext": Plaintext(), "envelope": memKeyring(newMemStore())} {
			b.Run(sz.name+"/"+name, func(b *testing.B) {
				f := mustNewFile(b, filepath.Join(testdir.New(b), "cache.json"), p)
				mustWrite(b, f, data)
				b.SetBytes(int64(len(data)))
				for b.Loop() {
					if _, _, err := f.Read(context.Background()); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkWrite compares sealing and atomically writing (temp file, fsync,
// rename) with a plain os.WriteFile (no fsync, not atomic) of the same bytes,
// and with os.WriteFile followed by fsync.
func BenchmarkWrite(b *testing.B) {
	for _, sz := range benchSizes {
		data := benchJSON(sz.size)
		b.Run(sz.name+"/os.WriteFile", func(b *testing.B) {
			path := filepath.Join(testdir.New(b), "plain.json")
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if err := os.WriteFile(path, data, 0o600); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(sz.name+"/os.WriteFile+fsync", func(b *testing.B) {
			path := filepath.Join(testdir.New(b), "plain.json")
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := f.Write(data); err != nil {
					b.Fatal(err)
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
				if err := f.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
		for name, p := range map[string]Protector{"plaintext": Plaintext(), "envelope": memKeyring(newMemStore())} {
			b.Run(sz.name+"/"+name, func(b *testing.B) {
				f := mustNewFile(b, filepath.Join(testdir.New(b), "cache.json"), p)
				mustWrite(b, f, data) // creates the key
				b.SetBytes(int64(len(data)))
				for b.Loop() {
					if _, err := f.Write(context.Background(), data); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkStat is the hot path: one Stat per silent token call, of a file
// written a while ago (on Unix: kept open, see watcher).
func BenchmarkStat(b *testing.B) {
	f := mustNewFile(b, filepath.Join(testdir.New(b), "cache.json"), Plaintext())
	mustWrite(b, f, []byte("{}"))
	waitKept(b, f)
	for b.Loop() {
		if _, err := f.Stat(); err != nil {
			b.Fatal(err)
		}
	}
}
