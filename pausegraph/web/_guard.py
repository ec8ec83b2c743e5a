"""Who may talk to the server: loopback names, the bearer token, sessions and CSRF tokens.

Theory of operation. Without a token the server trusts the machine, not the
network: it binds loopback only (``cli serve`` checks), and refuses a request
whose ``Host`` is not a loopback name (a DNS-rebinding page would send its
own name) or whose ``Origin`` is another site's. With a token every request
carries ``Authorization: Bearer T``, or, for the HTML pages only, the session
cookie the login form set (HttpOnly, SameSite=Strict). Every HTML form
carries a CSRF token: an HMAC of a per-process secret and the session (the
cookie's nonce, or ``""`` without one), so a page of another site cannot
forge it and a restart voids them all. JSON posts need ``Content-Type:
application/json``, which a cross-site form cannot send without a CORS
preflight that this server never grants.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from urllib.parse import urlsplit

SESSION_COOKIE = "pausegraph_session"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address, without port) is this machine only.

    ``localhost``, or an IP address in ``127.0.0.0/8`` or ``::1`` written out
    in full (``[::1]``, ``::ffff:127.0.0.1``); never a name that only starts
    like one (``127.0.0.1.example.com``, which DNS may point anywhere).
    """
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


# what a Host header may be (RFC 9110: uri-host [":" port]): a name or an IPv4 address,
# or an IP literal in brackets, then an optional port; no user info, nothing after
_HOST_HEADER = re.compile(r"(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def host_name(host_header: str) -> str:
    """The name in a ``Host`` header, without its port (``[::1]:80`` gives ``::1``).

    A header that is no ``host[:port]`` (an unclosed ``[``, user info as in
    ``evil.example@localhost``, a port over 65535) gives ``""``, which no
    check accepts.
    """
    if _HOST_HEADER.fullmatch(host_header) is None:
        return ""
    try:
        split = urlsplit(f"//{host_header}")
        _ = split.port  # ValueError past 65535
        return split.hostname or ""
    except ValueError:
        return ""


class Guard:
    """The checks of one server process: its token (or none) and its secret."""

    def __init__(self, token: str | None) -> None:
        self.token = token or None
        self._secret = secrets.token_bytes(32)

    def _mac(self, purpose: str, text: str) -> str:
        message = f"{purpose}\0{text}".encode("utf-8", "surrogatepass")
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def token_ok(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header carries the token."""
        if self.token is None:
            return True
        scheme, _, given = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("utf-8", "surrogatepass"), self.token.encode()
        )

    def login_ok(self, given: str) -> bool:
        """Whether the login form's field holds the token."""
        return self.token is not None and hmac.compare_digest(
            given.encode("utf-8", "surrogatepass"), self.token.encode()
        )

    def new_session(self) -> str:
        """A cookie value: a nonce and its HMAC, so the server keeps no session table."""
        nonce = secrets.token_urlsafe(16)
        return f"{nonce}.{self._mac('session', nonce)}"

    def session_of(self, cookie: str | None) -> str | None:
        """The nonce of a valid session cookie, else ``None``."""
        nonce, _, mac = (cookie or "").partition(".")
        expected = self._mac("session", nonce).encode()
        if nonce and hmac.compare_digest(mac.encode("utf-8", "surrogatepass"), expected):
            return nonce
        return None

    def csrf_token(self, session: str) -> str:
        """The CSRF token every form of ``session`` carries."""
        return self._mac("csrf", session)

    def csrf_ok(self, session: str, given: str) -> bool:
        return hmac.compare_digest(
            given.encode("utf-8", "surrogatepass"), self.csrf_token(session).encode()
        )
