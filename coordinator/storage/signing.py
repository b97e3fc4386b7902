"""Short-lived signed URLs: HMAC-SHA256 over the method, the resource and the expiry."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode

from gridx.coordinator.errors import Forbidden


class UrlSigner:
    """Signs and checks `(method, resource, expiry)` triples with a secret key."""

    def __init__(self, key: bytes, base_url: str = "") -> None:
        self._key = key
        self.base_url = base_url.rstrip("/")

    def _mac(self, method: str, resource: str, expires_ms: int) -> str:
        msg = f"{method}\n{resource}\n{expires_ms}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def sign(
        self,
        method: str,
        path: str,
        resource: str,
        expires_ms: int,
        params: dict[str, str] | None = None,
    ) -> str:
        """A URL for `path` that grants `method` on `resource` until `expires_ms`."""
        sig = self._mac(method, resource, expires_ms)
        query = urlencode({**(params or {}), "exp": expires_ms, "sig": sig})
        return f"{self.base_url}{path}?{query}"

    def verify(self, method: str, resource: str, expires_ms: int, sig: str, now_ms: int) -> None:
        """Check a signature and its expiry.

        Raises:
            Forbidden: the signature is wrong or has expired.
        """
        # compare bytes: compare_digest refuses non-ASCII str, and a hostile URL may carry any
        expected = self._mac(method, resource, expires_ms).encode()
        if not hmac.compare_digest(expected, sig.encode("utf-8", "surrogateescape")):
            raise Forbidden("invalid signature on this link")
        if now_ms > expires_ms:
            raise Forbidden("this link has expired; ask for the task again")
