// Package persistence stores the MSAL token cache in one file and protects it
// with what the platform offers. It is the storage layer of msalcache; the
// msalcache package adds the cross-process lock and the cache semantics.
//
// # Protections
//
// The cache lives in one file on every OS; only its protection differs:
//
//   - Windows, [DPAPI]: the file is the raw DPAPI blob of the MSAL JSON
//     (CryptProtectData, CurrentUser scope, no entropy,
//     CRYPTPROTECT_UI_FORBIDDEN), byte-compatible with the files of the MSAL
//     .NET, Python and Node extensions.
//   - macOS and Linux, [Keyring]: envelope encryption. A random 256-bit key is
//     kept in the OS keyring (the login Keychain on macOS, the Secret Service
//     on Linux) through go-keyring; the file holds a small header, a nonce and
//     the AES-256-GCM ciphertext of the MSAL JSON. Keyrings are slow (a D-Bus
//     or process round trip per call) and limit secret sizes (about 3000 bytes
//     on macOS), while the cache is many kilobytes and read often: the key is
//     fetched once per process and kept in memory. What reading, decrypting
//     and writing cost is measured in the Performance table of the README
//     (https://github.com/msalcache/msalcache#performance).
//   - [Plaintext]: the MSAL JSON itself, only when asked for.
//
// Reading detects the format, so a plaintext file left by a fallback is read
// by an encrypting File and rewritten encrypted by its next Write. A file
// sealed by a protection the File does not use (an envelope read with the
// plaintext protection, a DPAPI blob outside Windows) is an error wrapping
// [ErrUnavailable], not [ErrCorrupt]: a process with that protection opens
// it, so it must not be overwritten.
//
// # Threat model
//
// The encryption protects the cache at rest against other users of the
// machine (together with the file's 0600 mode and the 0700 directory), and
// against whoever gets a copy of the file without the user's login secrets:
// a backup, a synced home directory, a stolen disk. It does not protect
// against malware or any program running as the same user: such a program can
// ask the keyring for the key (or DPAPI to decrypt) just as this package does.
// The key never appears in errors or logs, and neither does plaintext.
//
// NewFile refuses a cache path that is a symbolic link, and, on Unix, a
// directory that group or other users can write (they could replace the
// file). Windows relies on the ACLs of the user profile.
//
// # Atomicity, not durability
//
// Write replaces the file atomically: it writes a temporary file in the same
// directory (0600), syncs and closes it, and renames it over the cache file;
// directories are created 0700. A reader sees the old file or the new one,
// never a mix, even if the writer crashes (a crash can leave a temporary file
// named ".<name>.tmp-*" behind). The directory is not synced after the rename,
// so after a power failure the last write may be lost (the previous version
// remains); for a token cache that only means signing in again. On Windows,
// renames and reads that meet a sharing violation (another process has the
// file open) are retried with a bounded, jittered backoff.
//
// Before the rename, Write stamps the new file's modification time past
// every clock reading another process can have taken before the write: the
// next millisecond boundary after the time of the write, or the next second
// (two) where the file system keeps only those. MSAL Python and MSAL Node
// reload the file only if its mtime is later than the time they read after
// their own last sync; a file stamped by the kernel (from a clock that lags
// the wall clock by up to a tick, or truncated to the second) in the same
// tick would look older, and their next save would drop the write. The
// stamp lies at most one tick of the file system in the future.
//
// Network file systems: atomic rename and the modification times that
// [Version] compares are only as reliable as the file system; NFS clients
// cache attributes, so another machine's write may be noticed late. Keep the
// cache on a local disk.
//
// # File format
//
// A plaintext file is MSAL's JSON (UTF-8, optionally after a byte order mark).
// A DPAPI file starts with dwVersion 1 and the provider GUID
// df9d8cd0-1501-11d1-8c7a-00c04fc297eb in little-endian form
// (01 00 00 00 d0 8c 9d df 01 15 d1 11 8c 7a 00 c0 4f c2 97 eb). An envelope
// is:
//
//	offset  size  field
//	0       8     magic "MSALCENV" (4d 53 41 4c 43 45 4e 56)
//	8       1     format version, 1
//	9       8     key id: the first 8 bytes of SHA-256 of the key
//	17      12    nonce, random per write
//	29      n+16  AES-256-GCM ciphertext of the n-byte MSAL JSON, then the tag;
//	              the additional data is bytes 0-16 (the header)
//
// There is no length field; the ciphertext runs to the end of the file. A
// file of another version than 1 is reported as ErrCorrupt naming the version.
// When the key id differs from the key in memory, the key is fetched from the
// keyring once more (another process may have created a new one) before the
// file is declared corrupt.
//
// # The keyring item
//
// By default the key is the item with service [DefaultKeyringService]
// ("msalcache") and account [DefaultKeyringAccount] ("token-cache-key"); on
// Linux that is a Secret Service item in the default collection with the
// attributes service=msalcache and username=token-cache-key, labelled
// "Password for 'token-cache-key' on 'msalcache'"; on macOS a generic
// password in the login keychain. Its secret is the standard, padded base64
// of the 32-byte key. Probe uses a separate item whose account has ".probe"
// appended, and deletes it. The key is created on the first Seal when the
// keyring has none (Check never creates it). Creation holds a lock that
// every process of the user shares, whatever its cache file and
// environment, and reads the item again first, so processes that create the
// key of one item at the same time, for cache files in different
// directories too, all use one key. On Linux the lock is the name
// "org.msalcache.KeyCreation.k<hash of the item>" on the D-Bus session bus
// (the Secret Service's own bus: it needs no HOME or writable directory, and
// the bus frees it when its holder dies); where the bus refuses the name (a
// sandbox's filtered bus), and on macOS, it is a lock file in the user's
// cache directory (os.UserCacheDir, "msalcache/key-<hash of the
// item>.lockfile"). A lock that cannot be taken is an error wrapping
// ErrUnavailable, and no key is stored. Deleting the item
// makes existing cache files unreadable (ErrCorrupt: the cache starts empty
// and the user signs in again).
//
// # Availability
//
// Keyring calls never hang and never start daemons: on Linux no call is made
// unless a D-Bus session bus exists (DBUS_SESSION_BUS_ADDRESS, or the per-user
// bus in /run/user/<uid>), since go-keyring would otherwise exec dbus-launch;
// every call runs under the caller's context, or 5 s when it has none (an
// unlock prompt can wait forever; at most one call per Protector is left
// waiting). Failures are ErrUnavailable with what to install, start or
// unlock; nothing is written then.
package persistence
