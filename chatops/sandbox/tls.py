"""A throwaway certificate authority for the HTTPS stand-ins.

Some client libraries refuse plain HTTP (``pagerduty``'s URL setter only accepts ``https://``), so the
stand-ins serve TLS with a certificate issued by a CA that exists only for the life of a :class:`SandboxTLS`.
Clients are pointed at :attr:`SandboxTLS.ca_bundle_path` (or given :meth:`SandboxTLS.client_ssl_context`) to
trust it; nothing is added to the system trust store.
"""

from __future__ import annotations

import shutil
import ssl
import tempfile
from pathlib import Path
from types import TracebackType

import trustme

__all__ = ["SandboxTLS"]


class SandboxTLS:
    """A private CA plus one server certificate valid for ``127.0.0.1`` and ``localhost``.

    The CA certificate is written as PEM to a fresh temporary directory; :meth:`cleanup` removes it. Usable as
    a (synchronous) context manager.
    """

    def __init__(self, *, hostnames: tuple[str, ...] = ("127.0.0.1", "localhost")) -> None:
        self._ca = trustme.CA(organization_name="chatops sandbox CA")
        self._server_cert = self._ca.issue_cert(*hostnames)
        self._dir = Path(tempfile.mkdtemp(prefix="chatops-sandbox-tls-"))
        self._ca_path = self._dir / "ca.pem"
        self._ca.cert_pem.write_to_path(str(self._ca_path))

    @property
    def ca_bundle_path(self) -> Path:
        """Path of the PEM file holding the throwaway CA certificate (valid until :meth:`cleanup`)."""
        return self._ca_path

    def server_ssl_context(self) -> ssl.SSLContext:
        """A server-side context presenting the sandbox certificate (chain included)."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_cert.configure_cert(ctx)
        return ctx

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client-side context that trusts only the throwaway CA (hostname checking stays on)."""
        return ssl.create_default_context(cafile=str(self._ca_path))

    def cleanup(self) -> None:
        """Remove the temporary directory holding the CA bundle. Safe to call twice."""
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> SandboxTLS:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
