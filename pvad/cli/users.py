"""`pvad users add|list|remove`: the dashboard's local users (argon2 hashes in ``web.users_file``)."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from pvad.config.web import ROLES
from pvad.errors import ConfigError


def _users_file(args: argparse.Namespace) -> Path:
    if args.file:
        return Path(args.file)
    if args.config:
        from pvad.config import load_config

        return load_config(args.config, "server").web.users_file
    raise ConfigError("say which users file: --file PATH, or --config SERVER_YAML (its web.users_file)")


def _password(args: argparse.Namespace) -> str:
    """From --password-file, from standard input when it is not a terminal, else asked twice."""
    if args.password_file:
        try:
            return Path(args.password_file).read_text().rstrip("\r\n")
        except OSError as err:
            raise ConfigError(f"--password-file: {err}") from None
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise ConfigError("the two passwords differ")
    return first


def _cmd_add(args: argparse.Namespace) -> int:
    from analysis_server.web.auth import add_user

    path = _users_file(args)
    user = add_user(path, args.name, _password(args), args.role, replace=args.replace)
    print(f"{user.name} ({user.role}) in {path}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from analysis_server.web.auth import load_users

    path = _users_file(args)
    users = load_users(path)
    if not users:
        print(f"no users in {path}")
    for name, u in sorted(users.items()):
        print(f"{name:24s} {u.role}")
    return 0


def _cmd_remove(args: argparse.Namespace) -> int:
    from analysis_server.web.auth import remove_user

    path = _users_file(args)
    if not remove_user(path, args.name):
        print(f"pvad: error: no user {args.name} in {path}", file=sys.stderr)
        return 1
    print(f"{args.name} removed from {path} (their sessions end with it)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("users", help="the operator dashboard's local users")
    usub = c.add_subparsers(dest="users_command", required=True, metavar="ACTION")

    def where(p: argparse.ArgumentParser) -> None:
        g = p.add_mutually_exclusive_group()
        g.add_argument("--file", help="the users file")
        g.add_argument("--config", help="a server config: its web.users_file")

    p = usub.add_parser("add", help="add a user (or change one with --replace)")
    p.add_argument("name")
    p.add_argument("--role", choices=ROLES, default="viewer")
    p.add_argument("--password-file", help="read the password from this file (else standard input or a prompt)")
    p.add_argument("--replace", action="store_true", help="the user exists: set a new password and role")
    where(p)
    p.set_defaults(func=_cmd_add)
    p = usub.add_parser("list", help="users and their roles")
    where(p)
    p.set_defaults(func=_cmd_list)
    p = usub.add_parser("remove", help="remove a user")
    p.add_argument("name")
    where(p)
    p.set_defaults(func=_cmd_remove)
