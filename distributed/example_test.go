package distributed_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log"

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
