"""httpx / httpx2 AsyncClient that trusts a custom CA and "resolves" chosen host names to fixed IPs while
keeping the URL host name for the Host header, TLS SNI and certificate verification (curl --resolve).

Adapted from shared/peers/pinned_http.py. Works with both `httpx` (mcp 1.x) and `httpx2` (mcp 2.x): pass the
module. Pure stdlib otherwise, so it imports under either test venv.
"""

import ssl


def pinned_client(httpx_mod, ca_file=None, pins=None, **kw):
    """Return `httpx_mod.AsyncClient` whose transport sends requests for `pins` keys to the pinned IPs."""
    pins = {} if pins is None else pins  # a mapping-like object may be empty but still answer
    ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()

    class PinTransport(httpx_mod.AsyncBaseTransport):
        def __init__(self):
            self.inner = httpx_mod.AsyncHTTPTransport(verify=ctx)

        async def handle_async_request(self, request):
            host = request.url.host
            if host in pins:  # Host header was already set from the original URL; keep it
                # SNI stays the URL host unless the caller forced one (used to test SNI/Host mismatch).
                sni = request.extensions.get("sni_hostname", host)
                request.extensions = {**request.extensions, "sni_hostname": sni}
                request.url = request.url.copy_with(host=pins[host])
            return await self.inner.handle_async_request(request)

        async def aclose(self):
            await self.inner.aclose()

    kw.setdefault("timeout", httpx_mod.Timeout(30.0, read=300.0))
    return httpx_mod.AsyncClient(transport=PinTransport(), **kw)
