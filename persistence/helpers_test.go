package persistence

import (
	"cmp"
	"context"
	"errors"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/zalando/go-keyring"
)

// memStore is an in-memory secretStore that counts calls; it keeps the
// envelope protector testable on every OS.
type memStore struct {
	mu    sync.Mutex
	items map[[2]string]string

	gets, sets, deletes atomic.Int64
	entered             atomic.Int64  // calls that started
	err                 error         // if set, every call fails with it
	block               chan struct{} // if set, calls wait until it is closed
}

func newMemStore() *memStore { return &memStore{items: map[[2]string]string{}} }

func (m *memStore) wait() error {
	m.entered.Add(1)
	if m.block != nil {
		<-m.block
	}
	return m.err
}

func (m *memStore) Get(service, account string) (string, error) {
	m.gets.Add(1)
	if err := m.wait(); err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.items[[2]string{service, account}]
	if !ok {
		return "", keyring.ErrNotFound
	}
	return s, nil
}

func (m *memStore) Set(service, account, secret string) error {
	m.sets.Add(1)
	if err := m.wait(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.items[[2]string{service, account}] = secret
	return nil
}

func (m *memStore) Delete(service, account string) error {
	m.deletes.Add(1)
	if err := m.wait(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.items[[2]string{service, account}]; !ok {
		return keyring.ErrNotFound
	}
	delete(m.items, [2]string{service, account})
	return nil
}

func (m *memStore) get(service, account string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.items[[2]string{service, account}]
	return s, ok
}

func (m *memStore) keys() [][2]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ks [][2]string
	for k := range m.items {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, func(a, b [2]string) int {
		return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1]))
	})
	return ks
}

// memKeyring returns an envelope protector over store with the default item
// names and no session-bus check.
func memKeyring(store secretStore) *keyringProtector {
	return newKeyring("secret-service", "", "", store, nil)
}

func mustSeal(t testing.TB, p Protector, plaintext []byte) []byte {
	t.Helper()
	b, err := p.Seal(context.Background(), plaintext)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return b
}

func mustNewFile(t testing.TB, path string, p Protector) *File {
	t.Helper()
	f, err := NewFile(path, p)
	if err != nil {
		t.Fatalf("NewFile: %v", err)
	}
	return f
}

func mustWrite(t testing.TB, f *File, plaintext []byte) Version {
	t.Helper()
	v, err := f.Write(context.Background(), plaintext)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	return v
}

func wantErrIs(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want one matching %v", err, target)
	}
}

// dirNames lists the names in dir, sorted.
func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}
