"""The one TLS context of a process, shared by all of Gristmill's HTTP clients."""

import ssl
from functools import cache

import httpx


@cache
def tls_context() -> ssl.SSLContext:
    """httpx's default verifying context (certifi's CA bundle, or SSL_CERT_FILE / SSL_CERT_DIR).

    Building one loads the whole CA bundle, 12-50 ms of CPU, and httpx builds one for every client
    it makes, for http URLs too; contexts are made to be shared, so we build ours once.
    """
    return httpx.create_ssl_context()
