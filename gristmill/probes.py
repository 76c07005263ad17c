"""Is something there: a server answering at a URL, a port taken."""

import base64
import socket

import httpx


def basic_auth(user_and_password: str) -> dict[str, str]:
    """The Authorization header of HTTP basic auth for `user:password` (Prefect's auth string)."""
    return {"Authorization": "Basic " + base64.b64encode(user_and_password.encode()).decode()}


def is_reachable(url: str) -> bool:
    """Something answers at `url` (a 4xx counts: the server is up)."""
    try:
        return httpx.get(url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


def answers_ok(url: str, headers: dict[str, str] | None = None) -> bool:
    try:
        return httpx.get(url, headers=headers, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # As the servers themselves bind: a port left in TIME_WAIT by our last run counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False
