package persistence_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/msalcache/msalcache/persistence"
)

// A File with the plaintext protection: the format is detected on read, and
// every Write replaces the file atomically.
func ExampleFile() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	f, err := persistence.NewFile(filepath.Join(dir, "msal_cache.json"), persistence.Plaintext())
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	before, _ := f.Stat()
	written, err := f.Write(ctx, []byte(`{"AccessToken":{}}`))
	if err != nil {
		log.Fatal(err)
	}
	data, read, format, err := f.ReadFormat(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(before.Exists(), string(data), format, read == written)
	// Output: false {"AccessToken":{}} plaintext true
}
