"""Why an HTTP request failed, in words: one answer for every httpx-based source."""

from __future__ import annotations


def failure_words(exc: BaseException) -> str:
    """Say why a request failed, in words (never the URL or headers: they may carry secrets).

    Args:
        exc: What httpx raised.

    Returns:
        ``connection refused``, ``connection reset`` ...
    """
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused"
    if any(isinstance(e, ConnectionResetError) for e in chain):
        return "connection reset"
    names = {type(e).__name__ for e in chain}
    if "gaierror" in names:
        return "name not resolved"
    if names & {"SSLError", "SSLCertVerificationError"}:
        return "TLS error"
    if names & {"RemoteProtocolError", "IncompleteRead"}:
        return "connection closed mid-answer"
    if "ConnectError" in names:
        return "cannot connect"
    if "ReadError" in names:
        return "read error"
    if names & {"UnsupportedProtocol", "InvalidURL", "LocalProtocolError"}:
        return "bad URL"
    return f"request failed ({type(exc).__name__})"
