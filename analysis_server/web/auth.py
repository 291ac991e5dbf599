"""Dashboard accounts: local users with argon2 hashes in a file, signed session cookies, roles.

The users file (``web.users_file``, JSON, mode 0600) is written by ``pvad users add|remove`` and read
again by the running server whenever it changes. A session cookie is ``name.expiry.mac``: an HMAC-SHA256
with the key in ``web.session_secret_file`` over the name, the expiry and the user's current password
hash, so removing a user or changing their password ends their sessions, and a restart does not.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from pvad.certs import _write_private
from pvad.config.web import ROLES
from pvad.errors import ConfigError

NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
MIN_PASSWORD = 8
COOKIE = "pvad_session"

_hasher = PasswordHasher()
_DUMMY = _hasher.hash("not a password of anyone")  # unknown users cost the same time as wrong passwords


@dataclass(frozen=True)
class User:
    name: str
    role: str
    hash: str
    created_ns: int = 0

    def may(self, role: str) -> bool:
        """True when this user's role is `role` or above it."""
        return ROLES.index(self.role) >= ROLES.index(role)


def _check_name(name: str) -> None:
    if not NAME.match(name):
        raise ConfigError(f"user name {name!r}: 1-64 characters of letters, digits and . _ @ -")


def load_users(path: Path) -> dict[str, User]:
    """The users in `path` (none when it does not exist); a damaged file raises naming it."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"web.users_file {path}: cannot read it: {err}") from None
    users = {}
    try:
        for name, u in data["users"].items():
            if u["role"] not in ROLES:
                raise ValueError(f"user {name}: role {u['role']!r} is not one of {ROLES}")
            users[name] = User(name, u["role"], u["hash"], int(u.get("created_ns", 0)))
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        raise ConfigError(f"web.users_file {path}: not a pvad users file ({err})") from None
    return users


def save_users(path: Path, users: dict[str, User]) -> None:
    """Write atomically, readable by its owner only."""
    data = {"users": {n: {k: v for k, v in asdict(u).items() if k != "name"} for n, u in sorted(users.items())}}
    _write_private(Path(path), json.dumps(data, indent=1).encode())


def add_user(path: Path, name: str, password: str, role: str, *, replace: bool = False) -> User:
    _check_name(name)
    if role not in ROLES:
        raise ConfigError(f"role {role!r}: one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"the password must have at least {MIN_PASSWORD} characters")
    users = load_users(path)
    if name in users and not replace:
        raise ConfigError(f"user {name} exists already in {path} (--replace changes their password and role)")
    users[name] = User(name, role, _hasher.hash(password), time.time_ns())
    save_users(path, users)
    return users[name]


def remove_user(path: Path, name: str) -> bool:
    users = load_users(path)
    if users.pop(name, None) is None:
        return False
    save_users(path, users)
    return True


class UserStore:
    """The users file as the running server sees it: read again when its modification time changes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._stamp: tuple | None = None
        self._users: dict[str, User] = {}
        self._refresh()

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self._users = load_users(self.path)
            self._stamp = stamp

    def get(self, name: str) -> User | None:
        self._refresh()
        return self._users.get(name)

    def __len__(self) -> int:
        self._refresh()
        return len(self._users)

    def verify(self, name: str, password: str) -> User | None:
        """The user when `password` is theirs; None otherwise (in about the same time either way)."""
        user = self.get(name)
        try:
            _hasher.verify(user.hash if user is not None else _DUMMY, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return user


def load_secret(path: Path) -> bytes:
    """The session key in `path`; made (32 random bytes, mode 0600) when the file does not exist."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(32))
    try:
        key = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"web.session_secret_file {path}: {err}") from None
    if len(key) < 16:
        raise ConfigError(f"web.session_secret_file {path}: holds {len(key)} bytes; at least 16 are needed")
    return key


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class Sessions:
    def __init__(self, key: bytes, hours: float) -> None:
        self.key = key
        self.seconds = int(hours * 3600)

    def _mac(self, name: str, expiry: int, user_hash: str) -> str:
        msg = f"{name}\n{expiry}\n{user_hash}".encode()
        return _b64(hmac.new(self.key, msg, hashlib.sha256).digest())

    def issue(self, user: User, now: float | None = None) -> str:
        expiry = int((now or time.time()) + self.seconds)
        return f"{_b64(user.name.encode())}.{expiry}.{self._mac(user.name, expiry, user.hash)}"

    def check(self, token: str | None, users: UserStore, now: float | None = None) -> User | None:
        """The user a cookie belongs to, if it is genuine, not expired, and the user still exists unchanged."""
        if not token or token.count(".") != 2:
            return None
        name_b64, expiry_s, mac = token.split(".")
        try:
            name, expiry = _unb64(name_b64).decode(), int(expiry_s)
        except (ValueError, UnicodeDecodeError):
            return None
        if expiry < (now or time.time()):
            return None
        user = users.get(name)
        if user is None or not hmac.compare_digest(mac, self._mac(name, expiry, user.hash)):
            return None
        return user
