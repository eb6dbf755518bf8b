package distributed_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache/distributed"
)

// A web app shares one confidential client between all its requests; the
// Cache keeps one partition per user, and RemovePartition signs a user out
// of every replica.
func Example() {
	key := make([]byte, 32) // in production: a secret shared by the replicas
	rand.Read(key)
	store := distributed.NewMemoryStore() // or redisstore.Open(url) for many replicas
	defer store.Close()
	c, err := distributed.New(store, distributed.WithEncryptionKeys(key))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	cred, err := confidential.NewCredFromSecret("client secret")
	if err != nil {
		log.Fatal(err)
	}
	app, err := confidential.New("https://login.microsoftonline.com/contoso.onmicrosoft.com",
		"client ID", cred, confidential.WithCache(c))
	if err != nil {
		log.Fatal(err)
	}
	_ = app // sign-in: app.AcquireTokenByAuthCode; each request: app.AcquireTokenSilent

	// Sign-out of the user whose home account ID the session held.
	if err := c.RemovePartition(context.Background(), "uid.utid"); err != nil {
		log.Fatal(err)
	}
	fmt.Println(c.Stats().Writes, "write (the tombstone)")
	// Output: 1 write (the tombstone)
}

// Redis serves the reads and a database holds the truth. Here both layers
// are memory stores; in production, Tiered(redisstore.Open(...),
// pgstore.Open(...)). A first layer that loses its data (a new, empty one
// in front of the same database) still finds every value.
func ExampleTiered() {
	ctx := context.Background()
	db := distributed.NewMemoryStore()
	store := distributed.Tiered(distributed.NewMemoryStore(), db)
	defer store.Close() // closes both layers
	v := distributed.NewVersion()
	if err := store.Store(ctx, "partition", []byte("signed out"), 0, v, time.Hour); err != nil {
		log.Fatal(err)
	}

	emptied := distributed.Tiered(distributed.NewMemoryStore(), db)
	defer emptied.Close()
	value, version, err := emptied.Load(ctx, "partition")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(value), version == v)
	// Output: signed out true
}
