"""Bearer-token auth for the side API, and the optional guard on /metrics.

Two roles: `viewer` (sitrep, tasks, plans) and `operator` (fix-it, approve, audit; implies
viewer). Tokens come from `Config` (env or files, never argv). Every comparison is
constant-time and runs over every configured token, so timing says nothing about which
token almost matched. The principal recorded in the audit trail is derived from the token
that authenticated (`operator#<first 8 hex of its sha256>`), never from anything the client
sends, and the token itself is never logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

from fastapi import HTTPException, Request

# Why a request was refused: the `reason` label of celery_exporter_api_refused_total.
from exporter.apicounters import DISABLED, INVALID, MISSING, ROLE
from exporter.config import Config

VIEWER = "viewer"
OPERATOR = "operator"
_RANK = {VIEWER: 1, OPERATOR: 2}


@dataclass(frozen=True)
class Principal:
    role: str
    name: str  # e.g. "operator#1a2b3c4d": safe to log and show

    def can(self, role: str) -> bool:
        return _RANK[self.role] >= _RANK[role]


def principal_name(role: str, token: str) -> str:
    return f"{role}#{hashlib.sha256(token.encode()).hexdigest()[:8]}"


def _matches(candidate: str, tokens: tuple[str, ...]) -> str | None:
    """The configured token equal to candidate, comparing against all of them every time."""
    found: str | None = None
    given = candidate.encode()
    for token in tokens:
        if hmac.compare_digest(given, token.encode()):
            found = token
    return found


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def authenticate(request: Request, config: Config) -> Principal | None:
    token = bearer_token(request)
    if token is None:
        return None
    operator = _matches(token, config.operator_tokens)
    viewer = _matches(token, config.viewer_tokens)
    if operator is not None:
        return Principal(OPERATOR, principal_name(OPERATOR, operator))
    if viewer is not None:
        return Principal(VIEWER, principal_name(VIEWER, viewer))
    return None


class Refused(HTTPException):
    """A 401/403 with the reason it was refused, for the refusal metric, log and audit."""

    def __init__(
        self,
        status: int,
        message: str,
        reason: str,
        headers: dict[str, str] | None = None,
        principal: str | None = None,
    ) -> None:
        super().__init__(status, message, headers=headers)
        self.reason = reason
        self.principal = principal


def _unauthorized(message: str, reason: str) -> Refused:
    return Refused(401, message, reason, headers={"WWW-Authenticate": 'Bearer realm="celery-ops"'})


def require(request: Request, config: Config, role: str) -> Principal:
    """The authenticated principal with at least `role`, or an HTTPException saying why not."""
    if role == OPERATOR and not config.operator_tokens:
        raise Refused(
            403,
            "actions are disabled: no operator token is configured (set CE_OPERATOR_TOKENS "
            "or --operator-token-file)",
            DISABLED,
        )
    if not config.operator_tokens and not config.viewer_tokens:
        raise Refused(
            403,
            "the API is disabled: no token is configured (set CE_VIEWER_TOKENS or "
            "CE_OPERATOR_TOKENS, or the matching --*-token-file)",
            DISABLED,
        )
    if bearer_token(request) is None:
        raise _unauthorized("missing bearer token: send 'Authorization: Bearer <token>'", MISSING)
    principal = authenticate(request, config)
    if principal is None:
        raise _unauthorized("invalid token", INVALID)
    if not principal.can(role):
        raise Refused(
            403,
            f"this endpoint needs the {role} role; your token is {principal.role}",
            ROLE,
            principal=principal.name,
        )
    return principal


def check_metrics_auth(request: Request, config: Config) -> None:
    """Guard for /metrics per `Config.metrics_auth`; raises Refused(401) when refused.

    `token`: `Authorization: Bearer <token>`. `basic`: HTTP basic auth with any user name and
    a token as the password (Prometheus `basic_auth`); a bearer token is accepted too.
    """
    mode = config.metrics_auth
    if mode == "none":
        return
    token = bearer_token(request)
    if token is not None and _matches(token, config.metrics_tokens) is not None:
        return
    password = _basic_password(request) if mode == "basic" else None
    if password is not None and _matches(password, config.metrics_tokens) is not None:
        return
    reason = INVALID if request.headers.get("authorization") else MISSING
    if mode == "basic":
        raise Refused(
            401,
            "metrics need basic auth",
            reason,
            headers={"WWW-Authenticate": 'Basic realm="metrics"'},
        )
    raise _unauthorized("metrics need a bearer token", reason)


def _basic_password(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _user, sep, password = decoded.partition(":")
    return password if sep else None
