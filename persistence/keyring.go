package persistence

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/zalando/go-keyring"
)

// The keyring item that holds the envelope key unless WithKeyringItem names
// another one. On Linux it is a Secret Service item in the default collection
// with the attributes service=DefaultKeyringService and
// username=DefaultKeyringAccount; on macOS a generic password in the login
// keychain with that service and account. Its secret is the base64 (standard
// encoding, padded) of the 32-byte key. One key serves every cache file of the
// user that uses the same item.
const (
	DefaultKeyringService = "msalcache"
	DefaultKeyringAccount = "token-cache-key"
)

// probeSuffix is appended to the account name for the item Probe writes.
const probeSuffix = ".probe"

// defaultKeyringTimeout bounds each keyring operation when the caller's
// context has no deadline: go-keyring has no context, and a Secret Service
// unlock prompt can wait forever.
const defaultKeyringTimeout = 5 * time.Second

// secretStore is what the keyring protector needs from go-keyring. Get
// returns an error matching keyring.ErrNotFound when the item does not exist.
// Tests substitute an in-memory store so the envelope is tested on every OS.
type secretStore interface {
	Get(service, account string) (string, error)
	Set(service, account, secret string) error
	Delete(service, account string) error
}

// osKeyring is the real keyring through go-keyring.
type osKeyring struct{}

func (osKeyring) Get(service, account string) (string, error) { return keyring.Get(service, account) }
func (osKeyring) Set(service, account, secret string) error {
	return keyring.Set(service, account, secret)
}
func (osKeyring) Delete(service, account string) error { return keyring.Delete(service, account) }

// Keyring returns the Protector that encrypts the cache file with AES-256-GCM
// under a random 256-bit key kept in the OS keyring (Keychain on macOS,
// Secret Service on Linux) through go-keyring. name is what Name reports:
// "keychain" or "secret-service". An empty service or account means
// DefaultKeyringService or DefaultKeyringAccount.
//
// The key is fetched from the keyring at most once per Protector (and again
// only when a file names another key), then kept in memory. It is created on
// the first Seal if the keyring has none, under a lock that every process of
// the user shares (on Linux a name on the D-Bus session bus, elsewhere a
// lock file in the user's cache directory; see keylock.go), so that
// processes creating it at once agree on one key; Check and Open never
// create it.
// Every keyring call runs under ctx, bounded by 5 s when ctx has no deadline;
// on Linux no call is made unless a D-Bus session bus exists, so no
// dbus-launch is ever spawned.
func Keyring(name, service, account string) Protector {
	return newKeyring(name, service, account, osKeyring{}, sessionBusCheck)
}

// keyringProtector is the envelope protector. Its key is loaded lazily and
// cached; key and store calls are serialized.
type keyringProtector struct {
	name, service, account string
	store                  secretStore
	preflight              func() error // checks the keyring can be called at all (session bus); may be nil
	timeout                time.Duration
	// creationLock serializes creating the key among processes
	// (keylock.go).
	creationLock creationLocker

	// calls holds a token while a store call runs, so a call that hangs
	// (and outlives its caller's context) is never joined by a second one.
	calls chan struct{}
	// keyLock is a mutex that honours contexts: held while loading or
	// creating the key.
	keyLock chan struct{}

	mu  sync.Mutex
	key *envelopeKey // nil until loaded
}

func newKeyring(name, service, account string, store secretStore, preflight func() error) *keyringProtector {
	if service == "" {
		service = DefaultKeyringService
	}
	if account == "" {
		account = DefaultKeyringAccount
	}
	return &keyringProtector{
		name: name, service: service, account: account,
		store: store, preflight: preflight, timeout: defaultKeyringTimeout,
		creationLock: platformCreationLock,
		calls:        make(chan struct{}, 1), keyLock: make(chan struct{}, 1),
	}
}

func (p *keyringProtector) Name() string   { return p.name }
func (p *keyringProtector) format() Format { return FormatEnvelope }

// Check reports whether the keyring answers and holds a usable key or none
// yet (keyring.ErrNotFound means available: the key is created on the first
// Seal). A key found is kept for later use.
func (p *keyringProtector) Check(ctx context.Context) error {
	_, err := p.loadKey(ctx, false)
	if errors.Is(err, errNoKey) {
		return nil
	}
	return err
}

// Seal encrypts plaintext under the keyring key, creating the key first if
// the keyring has none.
func (p *keyringProtector) Seal(ctx context.Context, plaintext []byte) ([]byte, error) {
	k, err := p.loadKey(ctx, true)
	if err != nil {
		return nil, err
	}
	return k.seal(plaintext), nil
}

// Open decrypts an envelope. If the file names another key than the one in
// memory, the key is fetched from the keyring once more (another process may
// have created it) before the file is declared corrupt.
func (p *keyringProtector) Open(ctx context.Context, sealed []byte) ([]byte, error) {
	return p.open(ctx, sealed, false)
}

// openInPlace is Open that may overwrite sealed (File owns the bytes it read):
// the plaintext is decrypted into the same buffer, saving an allocation.
func (p *keyringProtector) openInPlace(ctx context.Context, sealed []byte) ([]byte, error) {
	return p.open(ctx, sealed, true)
}

func (p *keyringProtector) open(ctx context.Context, sealed []byte, inPlace bool) ([]byte, error) {
	e, err := parseEnvelope(sealed)
	if err != nil {
		return nil, err
	}
	k, err := p.loadKey(ctx, false)
	if err == nil && k.id != e.keyID {
		k, err = p.reloadKey(ctx, k.id)
	}
	if errors.Is(err, errNoKey) {
		return nil, fmt.Errorf("%w: the file is encrypted but its key is not in the keyring (%s): the item was deleted, or the file comes from another user or machine",
			ErrCorrupt, p.item(p.account))
	}
	if err != nil {
		return nil, err
	}
	if inPlace {
		return k.openTo(e.ciphertext[:0], e)
	}
	return k.open(e)
}

// Probe stores a random value in a separate item (account + ".probe"), reads
// it back and deletes it.
func (p *keyringProtector) Probe(ctx context.Context) error {
	ctx, cancel := p.bound(ctx)
	defer cancel()
	account := p.account + probeSuffix
	want := randomBase64(16)
	if err := p.call(ctx, func() error { return p.store.Set(p.service, account, want) }); err != nil {
		return fmt.Errorf("probe: storing %s: %w", p.item(account), err)
	}
	var got string
	getErr := p.call(ctx, func() (err error) { got, err = p.store.Get(p.service, account); return err })
	delErr := p.call(ctx, func() error { return p.store.Delete(p.service, account) })
	switch {
	case getErr != nil:
		return fmt.Errorf("probe: reading %s back: %w", p.item(account), getErr)
	case got != want:
		return fmt.Errorf("%w: probe: %s read back a different value than was stored", ErrUnavailable, p.item(account))
	case delErr != nil:
		return fmt.Errorf("probe: deleting %s: %w", p.item(account), delErr)
	}
	return nil
}

// errNoKey: the keyring answered and holds no key.
var errNoKey = errors.New("no key in the keyring")

// loadKey returns the cached key, or fetches it from the keyring (and caches
// it). With create, a missing key is created, stored and read back; without,
// a missing key is errNoKey.
func (p *keyringProtector) loadKey(ctx context.Context, create bool) (*envelopeKey, error) {
	if k := p.cached(); k != nil {
		return k, nil
	}
	ctx, cancel := p.bound(ctx)
	defer cancel()
	unlock, err := p.lockKey(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if k := p.cached(); k != nil {
		return k, nil
	}
	k, err := p.fetch(ctx)
	if errors.Is(err, errNoKey) && create {
		k, err = p.create(ctx)
	}
	return k, err
}

// reloadKey fetches the key from the keyring again, unless another goroutine
// already replaced the cached key whose id is stale.
func (p *keyringProtector) reloadKey(ctx context.Context, stale keyID) (*envelopeKey, error) {
	ctx, cancel := p.bound(ctx)
	defer cancel()
	unlock, err := p.lockKey(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if k := p.cached(); k != nil && k.id != stale {
		return k, nil
	}
	return p.fetch(ctx)
}

// fetch reads the key from the keyring and caches it. A missing key also
// clears the cache, so the next Seal creates a key that is in the keyring.
func (p *keyringProtector) fetch(ctx context.Context) (*envelopeKey, error) {
	var s string
	err := p.call(ctx, func() (err error) { s, err = p.store.Get(p.service, p.account); return err })
	if errors.Is(err, keyring.ErrNotFound) {
		p.setCached(nil)
		return nil, errNoKey
	}
	if err != nil {
		return nil, err
	}
	k, err := parseKey(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %s does not hold an msalcache key (%v): delete the item, or use another item",
			ErrUnavailable, p.item(p.account), err)
	}
	p.setCached(k)
	return k, nil
}

// create stores a new random key, unless another process created one
// meanwhile, and returns the key the keyring holds. It holds the
// cross-process lock of the item throughout (keylock.go), so every process
// that creates the key of an item at the same time ends up with one key.
func (p *keyringProtector) create(ctx context.Context) (*envelopeKey, error) {
	unlock, err := p.lockCreation(ctx)
	if err != nil {
		return nil, fmt.Errorf("creating the key: %w", err)
	}
	defer unlock()
	if k, err := p.fetch(ctx); !errors.Is(err, errNoKey) {
		return k, err // created by another process while this one waited, or an error
	}
	raw := make([]byte, keySize)
	_, _ = rand.Read(raw)
	err = p.call(ctx, func() error { return p.store.Set(p.service, p.account, base64.StdEncoding.EncodeToString(raw)) })
	clear(raw)
	if err != nil {
		return nil, fmt.Errorf("storing a new key: %w", err)
	}
	k, err := p.fetch(ctx)
	if errors.Is(err, errNoKey) {
		return nil, fmt.Errorf("%w: %s was stored but cannot be read back", ErrUnavailable, p.item(p.account))
	}
	return k, err
}

func parseKey(s string) (*envelopeKey, error) {
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("not base64")
	}
	defer clear(raw)
	return newEnvelopeKey(raw)
}

func (p *keyringProtector) cached() *envelopeKey {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.key
}

func (p *keyringProtector) setCached(k *envelopeKey) {
	p.mu.Lock()
	p.key = k
	p.mu.Unlock()
}

// bound gives ctx the default deadline if it has none.
func (p *keyringProtector) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, p.timeout)
}

func (p *keyringProtector) lockKey(ctx context.Context) (unlock func(), err error) {
	select {
	case p.keyLock <- struct{}{}:
		return func() { <-p.keyLock }, nil
	case <-ctx.Done():
		return nil, p.timedOut(ctx)
	}
}

// call runs one store operation in a goroutine and waits for it or for ctx.
// It returns nil, an error matching keyring.ErrNotFound, or an error wrapping
// ErrUnavailable that says what to do. At most one operation runs at a time:
// one that hangs past its caller's deadline keeps the slot until it returns,
// and later calls wait for the slot under their own deadline.
func (p *keyringProtector) call(ctx context.Context, op func() error) error {
	if p.preflight != nil {
		if err := p.preflight(); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrUnavailable, p.name, err)
		}
	}
	select {
	case p.calls <- struct{}{}:
	case <-ctx.Done():
		return p.timedOut(ctx)
	}
	done := make(chan error, 1)
	go func() {
		defer func() { <-p.calls }()
		done <- op()
	}()
	select {
	case err := <-done:
		if err == nil || errors.Is(err, keyring.ErrNotFound) {
			return err
		}
		return fmt.Errorf("%w: %s: %s", ErrUnavailable, p.name, keyringHint(err))
	case <-ctx.Done():
		return p.timedOut(ctx)
	}
}

func (p *keyringProtector) timedOut(ctx context.Context) error {
	return fmt.Errorf("%w: %s: the keyring did not answer in time (it may be waiting for an unlock prompt): unlock the keyring: %w",
		ErrUnavailable, p.name, ctx.Err())
}

// item names a keyring item in messages.
func (p *keyringProtector) item(account string) string {
	return fmt.Sprintf("keyring item service=%q account=%q", p.service, account)
}

func randomBase64(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}
