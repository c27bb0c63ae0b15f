"""``gridlink users …`` and ``gridlink audit …``: the centre's people and its audit trail.

    gridlink users add NAME --role 受理员 --db URL            (asks for the password)
    gridlink users list|disable|enable|reset-password|roles … --db URL
    gridlink users token NAME --label city-platform [--role acceptor] [--days 90] --db URL
    gridlink users revoke-token ID --db URL
    gridlink audit verify --db URL
    gridlink audit export --since 2026-12-01 [--until …] [--format csv|json] --db URL

The password comes from the terminal (never the command line, where ``ps`` and the shell
history would keep it), or from standard input with ``--password-stdin`` for scripts.
Every change is written to the audit trail with the operating-system user as the actor.
"""

import getpass
import json
import sys
import unicodedata

from ..store import open_store
from . import roles as role_table
from .accounts import Accounts
from .audit import AuditTrail, export
from .errors import AccountError
from .migrations import MIGRATIONS


def _pad(text, columns):
    """``text`` padded to ``columns`` terminal columns (a Chinese character takes two)."""
    width = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return text + " " * max(0, columns - width)


def _db(parser):
    parser.add_argument("--db", required=True,
                        help="the gateway's store: sqlite:///path or postgresql://…")


def _password(args, user):
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(f"password for {user}: ")
    if getpass.getpass("again: ") != first:
        raise AccountError("the two passwords differ")
    return first


STDIN_HELP = "read the password from standard input (one line; for scripts)"


def register_users(parser):
    sub = parser.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    roles_help = ", ".join(f"{r} ({label})" for r, label in role_table.LABELS.items())
    add = sub.add_parser("add", help="add an operator")
    add.add_argument("name", help="the user name to sign in with")
    add.add_argument("--role", "--roles", dest="roles", required=True,
                     help=f"comma-separated: {roles_help}")
    add.add_argument("--display", help="the name shown on the board (e.g. 张三)")
    add.add_argument("--password-stdin", action="store_true", help=STDIN_HELP)
    lst = sub.add_parser("list", help="list operators")
    lst.add_argument("--json", action="store_true", help="print the operators as JSON")
    for verb, text in (("disable", "stop an operator signing in (sessions and tokens end)"),
                       ("enable", "let a disabled operator sign in again")):
        p = sub.add_parser(verb, help=text)
        p.add_argument("name", help="the operator's user name")
    rp = sub.add_parser("reset-password", help="set a new password (ends the sessions)")
    rp.add_argument("name", help="the operator's user name")
    rp.add_argument("--password-stdin", action="store_true", help=STDIN_HELP)
    ro = sub.add_parser("roles", help="set an operator's roles")
    ro.add_argument("name", help="the operator's user name")
    ro.add_argument("roles", help=roles_help)
    tok = sub.add_parser("token", help="issue an API token for scripts and the city platform")
    tok.add_argument("name", help="the operator the token acts as")
    tok.add_argument("--label", required=True, help="what the token is for")
    tok.add_argument("--role", "--roles", dest="roles",
                     help="limit the token to these of the owner's roles")
    tok.add_argument("--days", type=int, default=90, help="lifetime (1-366 days)")
    rv = sub.add_parser("revoke-token", help="revoke an API token by its id")
    rv.add_argument("id", help="the token's id (printed by gridlink users token)")
    for p in sub.choices.values():
        _db(p)
    parser.set_defaults(func=cmd_users)


def register_audit(parser):
    sub = parser.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    ver = sub.add_parser("verify", help="check the audit trail's hash chain (exit 1 if broken)")
    exp = sub.add_parser("export", help="the trail for a period as CSV or JSON")
    exp.add_argument("--since", help="from this time (ISO 8601 UTC), inclusive")
    exp.add_argument("--until", help="to this time, exclusive")
    exp.add_argument("--target", help="one report, task or device")
    exp.add_argument("--format", choices=("csv", "json"), default="csv",
                     help="csv (default) or json")
    for p in (ver, exp):
        _db(p)
    parser.set_defaults(func=cmd_audit)


def _open(args):
    store = open_store(args.db)
    store.migrate(extra=MIGRATIONS)
    return store


def cmd_users(args):
    store = _open(args)
    try:
        accounts, trail = Accounts(store), AuditTrail(store)
        actor = f"os:{getpass.getuser()}"
        verb = args.users_command
        if verb == "list":
            found = accounts.list()
            if args.json:
                print(json.dumps(found, ensure_ascii=False, indent=1))
            for u in [] if args.json else found:
                state = "disabled" if u["disabled"] else (
                    f"locked until {u['locked_until']}" if u["locked_until"] else "active")
                labels = "、".join(role_table.LABELS[r] for r in u["roles"])
                print(f"{u['name']:16} {_pad(u['display'], 12)} {_pad(labels, 20)} {state}")
            return 0
        if verb == "add":
            user = accounts.add(args.name, args.roles, _password(args, args.name),
                                display=args.display)
            trail.append(actor, "user.add", target=f"user:{args.name}", after=user)
            print(f"added {args.name}: {', '.join(user['roles'])}")
        elif verb in ("disable", "enable"):
            before = accounts.get(args.name)
            user = accounts.set_disabled(args.name, verb == "disable")
            trail.append(actor, f"user.{verb}", target=f"user:{args.name}", before=before,
                         after=user)
            print(f"{args.name}: {verb}d")
        elif verb == "reset-password":
            accounts.reset_password(args.name, _password(args, args.name))
            trail.append(actor, "user.reset_password", target=f"user:{args.name}")
            print(f"{args.name}: new password set; signed out everywhere")
        elif verb == "roles":
            before = accounts.get(args.name)
            user = accounts.set_roles(args.name, args.roles)
            trail.append(actor, "user.roles", target=f"user:{args.name}", before=before,
                         after=user)
            print(f"{args.name}: {', '.join(user['roles'])}")
        elif verb == "token":
            secret, record = accounts.issue_token(args.name, args.label, roles=args.roles,
                                                  days=args.days)
            trail.append(actor, "token.issue", target=f"token:{record['id']}", after=record)
            print(f"token {record['id']} for {args.name} ({', '.join(record['roles'])}), "
                  f"expires {record['expires_at']}; shown once:", file=sys.stderr)
            print(secret)
        elif verb == "revoke-token":
            accounts.revoke_token(args.id)
            trail.append(actor, "token.revoke", target=f"token:{args.id}")
            print(f"token {args.id}: revoked")
        return 0
    finally:
        store.close()


def cmd_audit(args):
    store = _open(args)
    try:
        trail = AuditTrail(store)
        if args.audit_command == "verify":
            ok, problems = trail.verify()
            n = store.fetchall("SELECT n FROM audit_head WHERE id = 1")[0]["n"]
            if ok:
                print(f"audit trail intact: {n} entries, every hash chained")
                return 0
            for p in problems:
                print(p, file=sys.stderr)
            print(f"audit trail BROKEN: {len(problems)} problem(s)", file=sys.stderr)
            return 1
        sys.stdout.write(export(trail.entries(target=args.target, since=args.since,
                                              until=args.until), args.format))
        return 0
    finally:
        store.close()
