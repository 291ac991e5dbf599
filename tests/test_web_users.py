"""`pvad users add|list|remove` and the users file: argon2 hashes, mode 0600, named errors."""

from __future__ import annotations

import json
import os
import stat

import pytest

pytest.importorskip("argon2")

from analysis_server.web.auth import Sessions, UserStore, load_secret, load_users  # noqa: E402
from pvad.cli import main  # noqa: E402


def test_users_add_list_remove(tmp_path, capsys):
    users = tmp_path / "users.json"
    pw = tmp_path / "pw"
    pw.write_text("a long enough password\n")
    assert main(["users", "add", "ann", "--role", "operator", "--file", str(users), "--password-file", str(pw)]) == 0
    assert main(["users", "add", "bob", "--file", str(users), "--password-file", str(pw)]) == 0
    assert main(["users", "list", "--file", str(users)]) == 0
    out = capsys.readouterr().out
    assert "ann                      operator" in out and "bob                      viewer" in out
    raw = users.read_text()
    assert "a long enough password" not in raw and json.loads(raw)["users"]["ann"]["hash"].startswith("$argon2id$")
    assert stat.S_IMODE(os.stat(users).st_mode) == 0o600
    store = UserStore(users)
    assert store.verify("ann", "a long enough password").role == "operator"
    assert store.verify("ann", "a long enough passworD") is None and store.verify("zed", "whatever!") is None
    # adding again needs --replace; a short password or a bad name is refused with the reason
    assert main(["users", "add", "ann", "--file", str(users), "--password-file", str(pw)]) == 2
    assert "exists already" in capsys.readouterr().err
    pw.write_text("short")
    assert main(["users", "add", "cy", "--file", str(users), "--password-file", str(pw)]) == 2
    assert "at least 8" in capsys.readouterr().err
    assert main(["users", "add", "no/slash", "--file", str(users), "--password-file", str(pw)]) == 2
    assert main(["users", "remove", "ann", "--file", str(users)]) == 0
    assert main(["users", "remove", "ann", "--file", str(users)]) == 1
    assert set(load_users(users)) == {"bob"}


def test_users_file_from_a_server_config(tmp_path, pki, capsys):
    import yaml

    s = pki["server"]
    cfg = tmp_path / "server.yaml"
    cfg.write_text(yaml.safe_dump({"kind": "server", "tls": {"ca": str(s.ca), "cert": str(s.cert), "key": str(s.key)},
                                   "web": {"enabled": True, "users_file": str(tmp_path / "u.json")}}))
    pw = tmp_path / "pw"
    pw.write_text("another password")
    assert main(["users", "add", "root", "--role", "admin", "--config", str(cfg), "--password-file", str(pw)]) == 0
    assert load_users(tmp_path / "u.json")["root"].role == "admin"


def test_sessions_expire_and_depend_on_the_key(tmp_path):
    from analysis_server.web.auth import add_user

    users = tmp_path / "users.json"
    add_user(users, "ann", "a long enough password", "viewer")
    store = UserStore(users)
    key = load_secret(tmp_path / "secret")
    assert stat.S_IMODE(os.stat(tmp_path / "secret").st_mode) == 0o600 and load_secret(tmp_path / "secret") == key
    s = Sessions(key, hours=1)
    token = s.issue(store.get("ann"), now=1000.0)
    assert s.check(token, store, now=1000.0 + 3599).name == "ann"
    assert s.check(token, store, now=1000.0 + 3601) is None
    assert Sessions(b"x" * 32, hours=1).check(token, store, now=1000.0) is None
    name, expiry, mac = token.split(".")
    assert s.check(f"{name}.{int(expiry) + 3600}.{mac}", store, now=1000.0) is None  # the expiry is signed
    (tmp_path / "short").write_bytes(b"123")
    with pytest.raises(Exception, match="web.session_secret_file"):
        load_secret(tmp_path / "short")


def test_bench_web_is_a_bench_command():
    from pvad.cli import build_parser

    args = build_parser().parse_args(["bench", "web", "--json", "--no-process", "--tiles", "4"])
    assert args.func.__name__ == "_cmd_bench_web" and args.tiles == 4 and args.no_process and args.json
