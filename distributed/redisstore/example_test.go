package redisstore_test

import (
	"log"
	"time"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/distributed/redisstore"
)

// A web app's replicas share one token cache on Redis. (Not run: it needs
// a Redis server.)
func ExampleOpen() {
	store, err := redisstore.Open("rediss://app:password@cache.example.com:6380/0",
		redisstore.WithDialTimeout(2*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	cache, err := distributed.New(store, distributed.WithTTL(24*time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()
	// confidential.New(authority, clientID, cred, confidential.WithCache(cache))
}

// Redis Cluster: the seed nodes in one URL.
func ExampleOpen_cluster() {
	store, err := redisstore.Open("redis://10.0.0.1:7000?addr=10.0.0.2:7000&addr=10.0.0.3:7000")
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
}
