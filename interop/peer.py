# peer.py: a Python process on an MSAL token cache file, through the real
# MSAL Python (msal.SerializableTokenCache, msal.PublicClientApplication) and
# msal_extensions (PersistedTokenCache over FilePersistence, plaintext, with
# its CrossPlatLock), as Debian packages them (python3-msal,
# python3-msal-extensions). The Go tests in this directory start it next to
# msalcache processes on the same file, as they start peer.mjs for Node.
#
#   python3 peer.py write <cache> <id> <count>   add <count> access tokens through TokenCache.add
#   python3 peer.py hold <cache>                 take CrossPlatLock, print "locked", wait to be killed
#   python3 peer.py dump <cache>                 print the cache as PersistedTokenCache loads it
#   python3 peer.py client <cache> <authority> <cert> <scope>...
#                                                a PublicClientApplication on the cache: list the
#                                                accounts, then acquire_token_silent for each scope
#
# Environment (write):
#   PEER_MARKER  a file created with O_EXCL right after CrossPlatLock is
#                entered and removed right before it is left; another
#                process's marker there means both were inside at once
#   PEER_START   wait (at most 60 s) for this file before writing
#   PEER_STOP    stop early, before <count>, once this file exists
#   PEER_PAUSE   wait 0 to this many ms between writes (default 0)
#   PEER_TURN    take turns with another writer: before write i > 0, wait
#                (at most 60 s) for the file "<PEER_TURN>.other.<i-1>"; after
#                write i, create "<PEER_TURN>.peer.<i>"
#
# "write" prints one JSON report on stdout. Each write is one token response
# handed to TokenCache.add, as MSAL Python's acquire_token_* do: it stores an
# access token, the account and the app metadata, one PersistedTokenCache
# modify each, and each modify is one lock, reload-if-newer and save. The
# report counts what the lock did (gaveUp: CrossPlatLock's exclusive create
# timed out after 5 s and it went on anyway), what the marker saw, the
# modifies that did not reload a file another process had changed since this
# one saved it (the mtime check missed the change), and the keys each save
# removed from the file: read from the very file the save truncates, just
# before it does. The saves of all peer.py processes take turns (a flock on
# "<cache>.peer-saves", the test's own), so that this reading is never a
# write of another Python process caught half done.

import base64
import fcntl
import json
import os
import random
import sys
import time
from urllib.parse import urlparse

import msal
import msal_extensions
from msal_extensions import cache_lock, persistence, token_cache

CLIENT_ID = "0b6d4f1e-6f0a-4c53-9a39-3f2c1d5e7a11"  # the same in helpers_test.go
SECTIONS = ["Account", "IdToken", "AccessToken", "RefreshToken", "AppMetadata"]
AT = msal.TokenCache.CredentialType.ACCESS_TOKEN

report = {
    "pid": os.getpid(),
    "versions": {"msal": msal.__version__, "msal_extensions": msal_extensions.__version__},
    "writes": 0,
    "written": [],  # numbers of the writes whose access token was saved
    "errors": [],  # what a failed write raised
    "overlaps": 0,  # marker already present when this process entered the lock
    "gaveUp": 0,  # lock entries after CrossPlatLock's exclusive create timed out
    "lockWaitMaxMs": 0,  # the longest wait to enter the lock
    "invalidUnderLock": 0,  # saves that found the file not MSAL JSON
    "saves": 0,
    "reloadsMissed": 0,  # modifies that did not reload a file others had changed
    "reloadsMissedStamped": 0,  # of which the missed file carried msalcache's stamp
    "missedByUs": 0,  # the most a missed change's mtime lay before this process's last save, in µs
    "destroyed": [],  # "Section/key" removed from the file by this process's saves
    "emptyReloads": 0,  # reloads that found the file empty after it had held a cache
    "blindSaves": 0,  # saves that found the file they truncate empty after it had held a cache
}


class MarkedLock(cache_lock.CrossPlatLock):
    """The real CrossPlatLock, instrumented without changing what it does."""

    def _try_to_create_lock_file(self):
        created = super()._try_to_create_lock_file()
        if not created:
            report["gaveUp"] += 1
        return created

    def __enter__(self):
        start = time.monotonic()
        handle = super().__enter__()
        report["lockWaitMaxMs"] = max(report["lockWaitMaxMs"], int((time.monotonic() - start) * 1000))
        self._marked = False
        marker = os.environ.get("PEER_MARKER")
        if marker:
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                self._marked = True
            except FileExistsError:
                report["overlaps"] += 1
        return handle

    def __exit__(self, *args):
        if getattr(self, "_marked", False):
            os.remove(os.environ["PEER_MARKER"])
        return super().__exit__(*args)


token_cache.CrossPlatLock = MarkedLock

# FilePersistence.save opens the file with O_TRUNC through the module's
# _open. This _open truncates the same file itself, after reading what it
# held, so that the save can be compared with what it overwrites.
_overwritten = []


def _reading_open(location):
    fd = os.open(location, os.O_RDWR | os.O_CREAT, 0o600)
    chunks, off = [], 0
    while True:
        b = os.pread(fd, 1 << 20, off)
        if not b:
            break
        chunks.append(b)
        off += len(b)
    _overwritten.append(b"".join(chunks).decode("utf-8", "replace"))
    os.ftruncate(fd, 0)
    return fd


persistence._open = _reading_open


def parse(text):
    """The MSAL JSON object in text, {} for an empty file, None if not MSAL JSON."""
    if text.strip() == "":
        return {}
    try:
        v = json.loads(text)
    except ValueError:
        return None
    return v if isinstance(v, dict) else None


last_saved = [None]  # what this process's last save wrote
had_cache = [False]  # whether this process has seen the file hold a cache


class InstrumentedPersistence(persistence.FilePersistence):
    def save(self, content):
        del _overwritten[:]
        # The saves of this test's Python processes take turns, under a
        # lock of the test's own (not MSAL's): two processes that both went
        # ahead without CrossPlatLock would otherwise interleave their
        # in-place writes, and a save could read the other's write half done
        # and not know what it overwrites. msalcache's writers replace the
        # file by rename and never write it in place, so with the turns
        # what a save reads before it truncates is exactly what it
        # overwrites.
        with open(self.get_location() + ".peer-saves", "a") as turns:
            fcntl.flock(turns, fcntl.LOCK_EX)
            super().save(content)
        last_saved[0] = content
        report["saves"] += 1
        on_disk = parse(_overwritten[0]) if _overwritten else {}
        if _overwritten and _overwritten[0].strip() == "" and had_cache[0]:
            report["blindSaves"] += 1
        had_cache[0] = True
        nxt = parse(content)
        if on_disk is None or nxt is None:
            report["invalidUnderLock"] += 1
            return
        for s in SECTIONS:
            for key in (on_disk.get(s) or {}):
                if key not in (nxt.get(s) or {}):
                    report["destroyed"].append(s + "/" + key)


def read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return None


def open_cache(path):
    cache = token_cache.PersistedTokenCache(InstrumentedPersistence(path))
    real_reload, real_deserialize = cache._reload_if_necessary, cache.deserialize
    loaded = []

    def deserialize(state):
        loaded.append(True)
        if state and state.strip():
            had_cache[0] = True
        elif had_cache[0]:
            report["emptyReloads"] += 1
        return real_deserialize(state)

    def reload_if_necessary():
        # Called under the lock by modify: when it does not reload, the
        # file should hold what this process last saved. The file is looked
        # at first, so what the check saw is what is compared.
        text = read_text(path)
        mtime_ns = os.stat(path).st_mtime_ns if text is not None else 0
        mtime = mtime_ns / 1e9
        del loaded[:]
        real_reload()
        if not loaded and text is not None and text != last_saved[0]:
            report["reloadsMissed"] += 1
            if mtime_ns % 1000000 == 0:
                # stamped at a whole millisecond, as msalcache stamps its
                # writes (the kernel's stamps on a file system with
                # nanosecond timestamps practically never are)
                report["reloadsMissedStamped"] += 1
            # how far the other process's mtime lies before this process's
            # clock reading after its own last save
            report["missedByUs"] = max(report["missedByUs"], int((cache._last_sync - mtime) * 1e6))

    cache.deserialize = deserialize
    cache._reload_if_necessary = reload_if_necessary
    return cache


def b64(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def token_event(wid, i):
    """A token response as MSAL Python's acquire_token_* hand it to the cache."""
    return {
        "client_id": CLIENT_ID,
        "scope": ["api://interop/%s/%d" % (wid, i)],
        "token_endpoint": "https://login.interop.example/interop-tenant/oauth2/v2.0/token",
        "response": {
            "access_token": "py-secret-%s-%d" % (wid, i),
            "token_type": "Bearer",
            "expires_in": 3600,
            "client_info": b64({"uid": wid + "-uid", "utid": "interop-tenant"}),
        },
    }


def wait_start(wid):
    gate = os.environ.get("PEER_START")
    if not gate:
        return
    open(gate + ".ready." + wid, "w").close()
    wait_file(gate, "the start gate")


def wait_file(path, what):
    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise RuntimeError("%s did not come within 60 s" % what)
        time.sleep(0.001)


def write(path, wid, count):
    cache = open_cache(path)
    real_modify = cache.modify
    current = [None]

    def modify(credential_type, old_entry, new_key_value_pairs=None):
        real_modify(credential_type, old_entry, new_key_value_pairs)
        if credential_type == AT and current[0] is not None:
            report["written"].append(current[0])

    cache.modify = modify
    wait_start(wid)
    start = time.monotonic()
    stop = os.environ.get("PEER_STOP")
    pause = int(os.environ.get("PEER_PAUSE", "0"))
    turn = os.environ.get("PEER_TURN")
    for i in range(count):
        if stop and os.path.exists(stop):
            break
        if i > 0 and pause > 0:
            time.sleep(random.random() * pause / 1000)
        if i > 0 and turn:
            wait_file("%s.other.%d" % (turn, i - 1), "the other writer's turn %d" % (i - 1))
        current[0] = i
        try:
            cache.add(token_event(wid, i))
        except Exception as e:  # what the app's acquire_token_* would raise
            report["errors"].append("write %d: %s: %s" % (i, type(e).__name__, e))
        if turn:
            open("%s.peer.%d" % (turn, i), "w").close()
    report["writes"] = len(report["written"])
    report["ms"] = int((time.monotonic() - start) * 1000)
    sys.stdout.write(json.dumps(report) + "\n")


def hold(path):
    lock = cache_lock.CrossPlatLock(path + ".lockfile")
    lock.__enter__()
    sys.stdout.write("locked\n")
    sys.stdout.flush()
    while True:
        time.sleep(3600)


def dump(path):
    """What a PersistedTokenCache loads from the file (find reloads it)."""
    cache = token_cache.PersistedTokenCache(persistence.FilePersistence(path))
    ats = cache.find(AT)
    accounts = cache.find(msal.TokenCache.CredentialType.ACCOUNT)
    sys.stdout.write(json.dumps({
        "homeAccountIds": sorted(a.get("home_account_id") or "" for a in accounts),
        "usernames": sorted(a.get("username") or "" for a in accounts),
        "accessTokens": sorted(cache.key_makers[AT](**e) for e in ats),
        "secrets": sorted(e.get("secret") or "" for e in ats),
    }) + "\n")


def client(path, authority, cert, scopes):
    """A real PublicClientApplication on the cache file: what an app does
    when it starts: list the accounts, then get tokens silently."""
    app = msal.PublicClientApplication(
        CLIENT_ID, authority=authority, validate_authority=False, verify=cert,
        token_cache=token_cache.PersistedTokenCache(persistence.FilePersistence(path)))
    # MSAL Python names an authority's environment (in every cache entry) by
    # its host alone, MSAL Go by host and port. Real authorities use the
    # default port, so they agree; a local identity provider does not: name
    # it as MSAL Go does, as a real deployment would see it.
    app.authority.instance = urlparse(authority).netloc
    accounts = app.get_accounts()
    out = {
        "usernames": sorted(a.get("username") or "" for a in accounts),
        "homeAccountIds": sorted(a.get("home_account_id") or "" for a in accounts),
        "tokens": [],
    }
    for scope in scopes:
        r = app.acquire_token_silent([scope], account=accounts[0]) if accounts else None
        if r is None or "access_token" not in r:
            out["tokens"].append({"scope": scope, "error": (r or {}).get("error", "no token")})
        else:
            out["tokens"].append({"scope": scope, "accessToken": r["access_token"]})
    sys.stdout.write(json.dumps(out) + "\n")


def main(argv):
    if len(argv) >= 4 and argv[0] == "write":
        write(argv[1], argv[2], int(argv[3]))
    elif len(argv) == 2 and argv[0] == "hold":
        hold(argv[1])
    elif len(argv) == 2 and argv[0] == "dump":
        dump(argv[1])
    elif len(argv) >= 5 and argv[0] == "client":
        client(argv[1], argv[2], argv[3], argv[4:])
    else:
        sys.stderr.write("usage: python3 peer.py write|hold|dump|client <cache> ...\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
