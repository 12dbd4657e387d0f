"""Personal console accounts (R-10): argon2 hashes, lockout, optional TOTP, disable on leave."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.orm import Session

from kernel import audit
from kernel.errors import Conflict, Forbidden, InvalidInput, NotFound
from kernel.models import Role, User, utcnow
from kernel.pii import KeyRing

HASHER = PasswordHasher()
USERNAME = re.compile(r"^[a-z][a-z0-9_.-]{2,63}$")
MIN_PASSWORD = 12
TOTP_FIELD = "totp"
# Verified against when the user does not exist, so timing does not reveal valid usernames.
_DUMMY_HASH = HASHER.hash("not-a-real-password-" + secrets.token_hex(8))


@dataclass(frozen=True)
class LockoutPolicy:
    threshold: int = 5
    duration: timedelta = timedelta(minutes=15)


@dataclass(frozen=True)
class SignedIn:
    user_id: int
    username: str
    role: Role
    needs_totp: bool


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"password must have at least {MIN_PASSWORD} characters")
    if len(set(password)) < 5:
        raise InvalidInput("password is too repetitive")


def add_user(
    session: Session, username: str, display_name: str, role: Role, password: str, actor: str
) -> User:
    if not USERNAME.match(username):
        raise InvalidInput("username: 3-64 lower-case letters, digits, '.', '_' or '-'")
    if session.scalars(select(User).where(User.username == username)).first():
        raise Conflict(f"user {username!r} already exists")
    check_password_strength(password)
    user = User(
        username=username, display_name=display_name, role=role, password_hash=HASHER.hash(password)
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="user.added",
        object_type="user",
        object_id=user.id,
        detail={"role": role.value},
    )
    return user


def find_user(session: Session, username: str) -> User:
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        raise NotFound(f"user {username!r} does not exist")
    return user


def disable_user(session: Session, username: str, actor: str) -> User:
    user = find_user(session, username)
    user.active = False
    user.disabled_at = utcnow()
    audit.record(
        session, actor=actor, action="user.disabled", object_type="user", object_id=user.id
    )
    return user


def reset_password(session: Session, username: str, password: str, actor: str) -> User:
    user = find_user(session, username)
    check_password_strength(password)
    user.password_hash = HASHER.hash(password)
    user.failed_logins = 0
    user.locked_until = None
    audit.record(
        session, actor=actor, action="user.password_reset", object_type="user", object_id=user.id
    )
    return user


def enroll_totp(session: Session, keyring: KeyRing, username: str, actor: str) -> str:
    """Create a TOTP secret for the user; returns the provisioning URI to show once."""
    user = find_user(session, username)
    secret = pyotp.random_base32()
    user.sealed_totp_secret = keyring.service_cipher(TOTP_FIELD).seal_text(
        secret, f"user:{user.id}"
    )
    audit.record(
        session, actor=actor, action="user.totp_enrolled", object_type="user", object_id=user.id
    )
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name="dunning")


def verify_totp(keyring: KeyRing, user: User, code: str) -> bool:
    if user.sealed_totp_secret is None:
        return False
    secret = keyring.service_cipher(TOTP_FIELD).open_text(
        user.sealed_totp_secret, f"user:{user.id}"
    )
    return pyotp.TOTP(secret).verify(code.strip(), valid_window=1)


def _password_ok(user: User | None, password: str) -> bool:
    try:
        return HASHER.verify(user.password_hash if user else _DUMMY_HASH, password) and bool(user)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def authenticate(
    session: Session,
    username: str,
    password: str,
    policy: LockoutPolicy,
    totp_roles: frozenset[Role],
    now: datetime | None = None,
) -> SignedIn:
    """Check the password; count failures and lock the account after too many."""
    moment = now or utcnow()
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is not None and user.locked_until and user.locked_until > moment:
        raise Forbidden("account locked after repeated failures; try later or ask an admin")
    if not _password_ok(user, password) or user is None:
        _count_failure(session, user, policy, moment)
        raise Forbidden("wrong username or password")
    if not user.active:
        raise Forbidden("account disabled")
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = moment
    if HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = HASHER.hash(password)
    needs_totp = user.role in totp_roles or user.sealed_totp_secret is not None
    return SignedIn(user.id, user.username, user.role, needs_totp)


def _count_failure(
    session: Session, user: User | None, policy: LockoutPolicy, moment: datetime
) -> None:
    if user is None:
        return
    user.failed_logins += 1
    if user.failed_logins >= policy.threshold:
        user.locked_until = moment + policy.duration
        user.failed_logins = 0
        audit.record(
            session, actor="system", action="user.locked", object_type="user", object_id=user.id
        )


DEMO_ACCOUNTS: tuple[tuple[str, str, Role], ...] = (
    ("operator1", "オペレータ 一郎", Role.OPERATOR),
    ("operator2", "オペレータ 二郎", Role.OPERATOR),
    ("staff1", "納税課 職員", Role.STAFF),
    ("supervisor1", "管理者 花子", Role.SUPERVISOR),
    ("admin1", "システム 管理者", Role.ADMIN),
)


def ensure_demo_accounts(session: Session, actor: str = "demo") -> list[tuple[str, str, Role]]:
    """Demo only: one account per role (two operators), each with a fresh random password.

    Existing demo accounts get a new password (and are re-enabled), so the printed list is
    always the one that works. Returns ``(username, password, role)`` for the lead to print.
    """
    created = []
    for username, display_name, role in DEMO_ACCOUNTS:
        password = "demo-" + secrets.token_urlsafe(9)
        existing = session.scalars(select(User).where(User.username == username)).first()
        if existing is None:
            add_user(session, username, display_name, role, password, actor)
        else:
            existing.active, existing.disabled_at = True, None
            reset_password(session, username, password, actor)
        created.append((username, password, role))
    return created
