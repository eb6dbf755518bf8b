// Package msalcache is a persistent token cache for MSAL Go public-client
// applications: desktop apps, command-line tools and CI jobs. The cache is
// one file, encrypted with the operating system's own protection, shared
// safely by every process of the app, and cheap on every silent token call.
//
// # Use
//
//	c, err := msalcache.New(filepath.Join(dir, "msal.cache"))
//	if err != nil {
//		return err // wraps persistence.ErrUnavailable: no keyring here
//	}
//	defer c.Close()
//	app, err := public.New(clientID,
//		public.WithAuthority("https://login.microsoftonline.com/organizations"),
//		public.WithCache(c))
//	if err != nil {
//		return err
//	}
//	accounts, err := app.Accounts(ctx)
//	if err != nil {
//		return err
//	}
//	if len(accounts) > 0 {
//		res, err := app.AcquireTokenSilent(ctx, scopes, public.WithSilentAccount(accounts[0]))
//		// ...
//	}
//
// Pass WithPlaintextFallback where a keyring may be missing (SSH sessions,
// containers, WSL), or WithPlaintext to choose an unencrypted file outright.
//
// # Protection
//
// New settles the protection and Cache.Protection names it:
//
//   - "dpapi" on Windows: the file is the DPAPI blob (current user, no
//     entropy) of the MSAL JSON, as the other MSAL libraries write it.
//   - "keychain" on macOS and "secret-service" on Linux: a random 256-bit
//     key lives in the OS keyring (item persistence.DefaultKeyringService /
//     persistence.DefaultKeyringAccount unless WithKeyringItem says
//     otherwise); the file holds the MSAL JSON sealed with AES-256-GCM. The
//     key is fetched once per process.
//   - "plaintext": the MSAL JSON, readable by every MSAL library, in a file
//     only its owner may read.
//
// A file in another format than the configured one is read if it can be and
// rewritten in the configured format by the next write, so switching
// protection (say, from the plaintext fallback to the Secret Service) keeps
// users signed in.
//
// Threat model: the protection keeps tokens from other users of the
// machine, from backups and from a stolen disk. It does not protect them
// from programs running as the same user, which can ask the keyring or
// DPAPI just as this package does.
//
// # Many processes
//
// Every process that opens the same path shares one cache. Writes take a
// cross-process lock ("<path>.lockfile", see package lock) that also
// excludes the other MSAL libraries' writers, and recovers by itself from a
// holder that crashed. Export merges: an entry this process added, changed or
// removed since it last read the file wins, every other entry is taken from
// the file as it is now (read under the lock: a rewrite in place by another
// library can leave size and mtime as they were), so concurrent processes
// never lose each other's tokens. Replace reads without the lock: writes
// replace the file atomically (a temporary file renamed over it), so a
// reader sees the old file or the new one, never a mix. Other MSAL libraries
// rewrite the file in place, so a file that Replace finds empty or that does
// not decode is read again under the lock before it is taken for an empty
// cache or called corrupt; a file that held a cache and is still empty or
// half written under the lock (a writer that does not take the lock, as MSAL
// Python does after its own timeout) is waited for before Export merges into
// it: two seconds at most in all, counted from the first call that found it
// so, each call spending at most half of what is left of its deadline.
// Meanwhile reads get the cache the file held before, and a write fails
// (wrapping context.DeadlineExceeded) instead of merging into half a file;
// after that the file is taken for corrupt (see Errors), whatever the
// deadlines.
//
// Clear signs out for good: an MSAL client of the same Cache that read the
// cache before the Clear brings none of it back when it exports after, and
// a Replace that read the file just before the Clear removed it hands MSAL
// the cleared cache, not what it read. A token request already in flight
// when Clear runs (a silent call redeeming a refresh token) still writes
// what it gets when it returns, as it would into MSAL's own memory after
// RemoveAccount: sign out when no token call is running.
// MSAL's cache objects are pointers, and a Cache remembers per object (held
// weakly: clients that are gone are forgotten) what it last handed over,
// which is the base of the merge. A Marshaler that is not a pointer works
// too, but without that memory (as does a pointer never passed to Replace
// or Export of this Cache): the file wins every conflict, only the entries
// the file lacks are added, and an Export that holds an entry with another
// value than the file's returns an error that says it was not written.
//
// What is promised is atomicity, not durability of the last write: after a
// power cut the file holds a complete earlier or later state. On network file
// systems the lock and the atomic rename are only as good as the server's.
//
// # Cost
//
// MSAL Go calls Replace before every cache read. When the file has not
// changed since this Cache last read or wrote it, Replace costs one stat: no
// read, no decryption, no Unmarshal. (On Unix it is an fstat of the file
// and one of its directory, both kept open for the purpose, which need no
// path lookup: a link count other than 1 or a new status-change time of
// either sends Replace back to the path, so a file replaced, removed or
// moved away is noticed at once; the path is looked at once a second
// anyway.) Export writes nothing when MSAL's cache
// is unchanged (compared by content: MSAL Go marshals maps in random order).
// Measured figures are in the Performance table of the README
// (https://github.com/msalcache/msalcache#performance), the one place they are
// kept.
//
// # Errors
//
// A corrupt or undecryptable file (garbage, truncated, encrypted with a key
// that is gone, a DPAPI blob from another Windows profile) is logged as a
// warning and treated as an empty cache; as it is first overwritten it is
// kept as "<path>.corrupt-<time>" (the newest few copies are kept; Clear
// removes them), which needs no free disk space (see
// persistence.File.Overwrite). A file with some entries MSAL cannot read (written by
// a newer or faulty library) loses only those: the rest load, and the next
// write leaves them out, after the same copy. Logs and errors never quote
// cache content (MSAL's and the JSON decoder's messages can quote a token),
// only what kind of problem was found where. A protection that cannot be used (no Secret
// Service, a locked keyring) is an error wrapping persistence.ErrUnavailable,
// and nothing is overwritten. So is a file sealed by a protection this Cache
// does not use, which is not corrupt: an envelope encrypted with the keyring
// by a desktop process, found by a process of the same app on the plaintext
// fallback (an SSH session without the keyring). It is never copied aside or
// overwritten: unlock the keyring for that process, or give it a cache path
// of its own. Every call is bounded: by its context's
// deadline, or by WithLockTimeout (default 30s). No call holds an in-process
// mutex while it waits for the lock or the file: a Replace on an unchanged
// file returns at once even while another goroutine's Export waits for a
// lock that another process holds.
//
// A Cache keeps the cache file and its directory open (Unix) to make
// Replace cheap: Close releases them. Close is idempotent, and every call after it returns an
// error matching fs.ErrClosed.
package msalcache
