"""``privca est ...``: EST labels, HTTP Basic enrollment accounts and held enrollments."""

from __future__ import annotations

import argparse
import ipaddress
import json
from pathlib import Path

from server.ca.est import api as est_api
from server.cli.options import OPERATOR, STORAGE, Subparsers
from server.wiring import Services, build_est_service

__all__ = ["register"]


def _cidr(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an IP range: {value!r}") from exc


async def _label_add(s: Services, a: argparse.Namespace) -> int:
    anchors = b"".join(Path(p).read_bytes() for p in a.trust_anchor or [])
    attrs = None
    if a.csrattr is not None:
        attrs = tuple(
            est_api.CsrAttr(
                oid=item.partition("=")[0].strip(),
                values=tuple(v.strip() for v in item.partition("=")[2].split(",") if v.strip()),
            )
            for item in a.csrattr
        )
    label = est_api.EstLabel(
        name=a.name,
        ca=a.ca,
        profile=a.profile,
        auth_modes=frozenset(est_api.AuthMode(m) for m in (a.auth or ["basic", "cert"])),
        trust_anchors_pem=anchors,
        approval_required=a.approval_required,
        allow_subject_change=a.allow_subject_change,
        csrattrs=attrs,
        dns_suffixes=tuple(a.allow_dns or ()),
        allow_wildcard=a.allow_wildcard,
        ip_ranges=tuple(a.allow_ip or ()),
        uri_patterns=tuple(a.allow_uri or ()),
        email_domains=tuple(a.allow_email or ()),
        subject_patterns=tuple(a.subject or ()),
        max_days=a.max_days,
    )
    await build_est_service(s).add_label(label, actor=OPERATOR)
    print(f"created EST label {a.name} (restart `privca serve` to load new TLS trust anchors)")
    return 0


async def _label_list(s: Services, a: argparse.Namespace) -> int:
    labels = await build_est_service(s).list_labels()
    if a.json:
        print(json.dumps([est_api.label_json(lb) for lb in labels], indent=2))
        return 0
    print(
        f"{'LABEL':<20} {'CA':<12} {'PROFILE':<12} {'AUTH':<12} {'APPROVAL':<9} {'SOURCE':<9} "
        "GRANTS"
    )
    for lb in labels:
        modes = ",".join(sorted(str(m) for m in lb.auth_modes))
        print(
            f"{lb.name:<20} {lb.ca or '(default)':<12} {lb.profile:<12} {modes:<12} "
            f"{'yes' if lb.approval_required else 'no':<9} {lb.source:<9} "
            f"{est_api.policy_summary(lb)}"
        )
    return 0


async def _label_remove(s: Services, a: argparse.Namespace) -> int:
    await build_est_service(s).remove_label(a.name, actor=OPERATOR)
    print(f"removed EST label {a.name}")
    return 0


async def _user_add(s: Services, a: argparse.Namespace) -> int:
    await build_est_service(s).add_user(
        a.label,
        a.username,
        a.password,
        actor=OPERATOR,
        dns_suffixes=None if a.allow_dns is None else tuple(a.allow_dns),
        subject_patterns=None if a.subject is None else tuple(a.subject),
        max_days=a.max_days,
    )
    print(f"EST user {a.username} can enroll on label {a.label}")
    return 0


async def _user_list(s: Services, a: argparse.Namespace) -> int:
    for user in await build_est_service(s).list_users(a.label):
        narrowing = []
        narrowing += [f"dns={x}" for x in user.dns_suffixes or ()]
        narrowing += [f"subject={x}" for x in user.subject_patterns or ()]
        if user.max_days is not None:
            narrowing.append(f"max-days={user.max_days}")
        print(
            f"{user.label:<20} {user.username:<32} {user.created_at:%Y-%m-%d %H:%M} "
            f"{' '.join(narrowing) or '(label grant)'}"
        )
    return 0


async def _user_remove(s: Services, a: argparse.Namespace) -> int:
    await build_est_service(s).remove_user(a.label, a.username, actor=OPERATOR)
    print(f"removed EST user {a.username} from label {a.label}")
    return 0


async def _pending_list(s: Services, a: argparse.Namespace) -> int:
    status = None if a.all else est_api.PendingStatus.PENDING
    print(f"{'ID':<18} {'STATUS':<9} {'LABEL':<14} {'OPERATION':<15} {'REQUESTER':<32} SUBJECT")
    for p in await build_est_service(s).list_pending(status):
        print(
            f"{p.id:<18} {p.status:<9} {p.label:<14} {p.operation:<15} {p.requester:<32} "
            f"{p.subject}"
        )
    return 0


async def _pending_decide(s: Services, a: argparse.Namespace) -> int:
    approve = a.sub_action == "approve"
    await build_est_service(s).decide(a.id, approve=approve, actor=OPERATOR)
    print(f"{'approved' if approve else 'rejected'} EST enrollment {a.id}")
    return 0


def register(sub: Subparsers) -> None:
    """Add ``privca est ...`` to the top-level subparsers."""
    est = sub.add_parser("est", help="EST labels, enrollment accounts and approvals")
    groups = est.add_subparsers(dest="sub", required=True)
    label = groups.add_parser("label", help="EST labels").add_subparsers(
        dest="sub_action", required=True
    )
    p = label.add_parser("add", help="add a label (/.well-known/est/NAME/)", parents=[STORAGE])
    p.add_argument("name")
    p.add_argument("--ca", help="issuing CA (default: the default issuing CA)")
    p.add_argument("--profile", default="device", help="certificate profile (default device)")
    p.add_argument(
        "--auth", action="append", choices=["basic", "cert"], help="auth mode (default both)"
    )
    p.add_argument(
        "--trust-anchor",
        action="append",
        help="PEM file of CAs trusted for client certs (default: the label's CA)",
    )
    p.add_argument("--approval-required", action="store_true", help="hold for manual approval")
    p.add_argument(
        "--allow-subject-change",
        action="store_true",
        help="a client cert may ask for another subject/SAN (held for approval)",
    )
    p.add_argument("--csrattr", action="append", help="OID or OID=VALUE-OID,... for csrattrs")
    policy = p.add_argument_group(
        "name policy",
        "what clients may put in a certificate; with none of these the label issues device "
        "identities only (a subject name, no DNS/IP/URI/e-mail subjectAltName)",
    )
    policy.add_argument(
        "--allow-dns",
        action="append",
        metavar="SUFFIX",
        help="grant DNS names equal to or under SUFFIX (repeatable)",
    )
    policy.add_argument(
        "--allow-wildcard", action="store_true", help="grant *.NAME under an allowed DNS suffix"
    )
    policy.add_argument(
        "--allow-ip",
        action="append",
        metavar="CIDR",
        type=_cidr,
        help="grant IP addresses in CIDR (repeatable)",
    )
    policy.add_argument(
        "--allow-uri",
        action="append",
        metavar="PATTERN",
        help="grant URIs matching the shell pattern, e.g. 'spiffe://corp/ns/iot/*' (repeatable)",
    )
    policy.add_argument(
        "--allow-email",
        action="append",
        metavar="DOMAIN",
        help="grant e-mail addresses at DOMAIN (repeatable)",
    )
    policy.add_argument(
        "--subject",
        action="append",
        metavar="PATTERN",
        help="the RFC 4514 subject must match one shell pattern, e.g. 'CN=fire-sensor-*' "
        "(repeatable; default: any subject)",
    )
    policy.add_argument(
        "--max-days",
        type=int,
        metavar="N",
        help="certificates live at most N days (default: the profile's limit)",
    )
    p.set_defaults(handler=_label_add)
    p = label.add_parser("list", help="list labels", parents=[STORAGE])
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_label_list)
    p = label.add_parser("remove", help="remove a stored label and its accounts", parents=[STORAGE])
    p.add_argument("name")
    p.set_defaults(handler=_label_remove)

    user = groups.add_parser("user", help="HTTP Basic enrollment accounts").add_subparsers(
        dest="sub_action", required=True
    )
    p = user.add_parser("add", help="create an account (or reset its password)", parents=[STORAGE])
    p.add_argument("username")
    p.add_argument("--password", required=True)
    p.add_argument("--label", default="default")
    narrow = p.add_argument_group(
        "narrowing", "give this account less than its label grants (never more)"
    )
    narrow.add_argument(
        "--allow-dns",
        action="append",
        metavar="SUFFIX",
        help="only DNS names under SUFFIX, itself under one of the label's (repeatable)",
    )
    narrow.add_argument(
        "--subject",
        action="append",
        metavar="PATTERN",
        help="only subjects matching PATTERN, one of the label's if it has any (repeatable)",
    )
    narrow.add_argument(
        "--max-days", type=int, metavar="N", help="certificates live at most N days"
    )
    p.set_defaults(handler=_user_add)
    p = user.add_parser("list", help="list accounts", parents=[STORAGE])
    p.add_argument("--label")
    p.set_defaults(handler=_user_list)
    p = user.add_parser("remove", help="delete an account", parents=[STORAGE])
    p.add_argument("username")
    p.add_argument("--label", default="default")
    p.set_defaults(handler=_user_remove)

    pending = groups.add_parser("pending", help="enrollments awaiting approval").add_subparsers(
        dest="sub_action", required=True
    )
    p = pending.add_parser(
        "list", help="list enrollments waiting for a decision", parents=[STORAGE]
    )
    p.add_argument("--all", action="store_true", help="include decided and issued ones")
    p.set_defaults(handler=_pending_list)
    for action in ("approve", "reject"):
        p = pending.add_parser(action, help=f"{action} a held enrollment", parents=[STORAGE])
        p.add_argument("id")
        p.set_defaults(handler=_pending_decide)
