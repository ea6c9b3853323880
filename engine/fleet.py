"""The fleet's config, before validation: ``[[aws]]`` contexts and signal templates.

Both work on the TOML document as parsed (plain dicts and lists), before pydantic sees
it, so that the rest of the config is checked exactly as if it had been written out
by hand:

* ``[[aws]]`` (an array of tables) becomes the named contexts; the first one also
  stands in for the single ``[aws]`` table that the rest of the code knows.
* A ``[[service]]`` with ``services = ["web", "api"]`` is one table per service, and
  one with ``context = ["prod-eu", "staging-us"]`` one per context.
* A ``[[metric]]``, ``[[probe]]`` or ``[[rule]]`` with ``services = "*"`` (or a glob
  such as ``"web-*"``, or a list of them) is a template: one copy per matched
  ``[[service]]``, with ``{service}``, ``{cluster}`` and ``{context}`` replaced in every
  text and ``service`` set to the matched service's key.

Errors are ``ValueError`` whose text starts with the key (``metric #2.query: expected
...``): the config's error formatter shows them as one line after the file's name.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from sources.discovery import is_pattern, service_key

__all__ = ["is_pattern", "prepare", "service_key"]

PLACEHOLDERS = ("service", "cluster", "context")
"""What a template may name."""
TEMPLATE_KINDS = ("metric", "probe", "rule")
"""The tables that may be templates."""
MAX_EXPANDED = 20_000
"""At most this many tables after expansion (200 services x a few signals each is far
below; a runaway config is an error, not an out-of-memory)."""
DEFAULT_CONTEXT = "default"
"""What ``{context}`` stands for when the services name no ``[[aws]]`` context."""

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DATADOG_GROUP = re.compile(r"\bby\s*$")
"""Datadog's own ``by {version}`` is a group clause, not a placeholder."""
_AWS_BASE = ("region", "profile", "endpoint_url")


def short_name(name: str) -> str:
    """The name part of an ARN (``arn:...:service/prod/web`` → ``web``), else ``name``."""
    return name.rsplit("/", 1)[-1] if name.startswith("arn:") else name


def prepare(data: Any, origins: dict[tuple[str, int], str] | None = None) -> Any:
    """The document with ``[[aws]]`` contexts split out and templates expanded.

    Anything unexpected in shape is left as it is, for the validation to name.

    Args:
        data: The TOML document.
        origins: Filled with what an expanded table was written as, by ``(kind,
            index from 0)``: ``rule #2 (for prod-eu:shop/web)``, so that an error in a
            copy names the table in the file.
    """
    origins = {} if origins is None else origins
    if not isinstance(data, dict):
        return data
    data = dict(data)
    aws = data.get("aws")
    if isinstance(aws, list):
        data["aws_contexts"] = aws
        first = aws[0] if aws and isinstance(aws[0], dict) else {}
        data["aws"] = {k: first[k] for k in _AWS_BASE if k in first}
    services = data.get("service")
    if not isinstance(services, list):
        return data
    services = data["service"] = _names(services, origins)
    listed = [s for s in services if isinstance(s, dict) and _listed(s)]
    discovering = len(listed) < len(services)
    for kind in TEMPLATE_KINDS:
        tables = data.get(kind)
        if not isinstance(tables, list):
            continue
        expanded: list[Any] = []
        for index, table in enumerate(tables, 1):
            if isinstance(table, dict) and "services" in table:
                copies = expand(kind, index, table, listed, discovering=discovering)
                for copy in copies:
                    origins[(kind, len(expanded))] = f"{kind} #{index} (for {copy['service']})"
                    expanded.append(copy)
            else:
                if len(expanded) != index - 1:
                    origins[(kind, len(expanded))] = f"{kind} #{index}"
                expanded.append(table)
            if len(expanded) > MAX_EXPANDED:
                raise ValueError(
                    f"{kind} #{index}.services: expected templates that make at most "
                    f"{MAX_EXPANDED} [[{kind}]] tables"
                )
        data[kind] = expanded
    return data


def _names(services: list[Any], origins: dict[tuple[str, int], str]) -> list[Any]:
    """``[[service]]`` tables with ``services = ["web", "api", ...]`` (several services of
    one cluster in one table) as one table per service."""
    out: list[Any] = []
    written: list[int] = []
    for index, table in enumerate(services, 1):
        if not isinstance(table, dict) or "services" not in table:
            out.append(table)
            written.append(index)
            continue
        names = table["services"]
        if not (isinstance(names, list) and names and all(isinstance(n, str) and n for n in names)):
            raise ValueError(
                f"service #{index}.services: expected a list of service names, got {names!r:.60}"
            )
        if "service" in table:
            raise ValueError(
                f"service #{index}.service: expected either service or services (a list), not both"
            )
        rest = {k: v for k, v in table.items() if k != "services"}
        out.extend({**rest, "service": name} for name in names)
        written.extend([index] * len(names))
    return _contexts(out, written, origins)


def _contexts(
    services: list[Any], written: list[int], origins: dict[tuple[str, int], str]
) -> list[Any]:
    """``[[service]]`` tables with ``context = ["prod-eu", "staging-us"]`` (the same
    services in several accounts or regions) as one table per context."""
    out: list[Any] = []

    def note(index: int, table: Any) -> None:
        if written[index - 1] != len(out) + 1 and isinstance(table, dict):
            service, context = table.get("service"), table.get("context")
            where = f"{context}:{service}" if isinstance(context, str) else str(service)
            origins[("service", len(out))] = f"service #{written[index - 1]} (for {where})"

    for index, table in enumerate(services, 1):
        contexts = table.get("context") if isinstance(table, dict) else None
        if not isinstance(contexts, list):
            note(index, table)
            out.append(table)
            continue
        if not contexts or not all(isinstance(c, str) for c in contexts):
            raise ValueError(
                f"service #{index}.context: expected the name of an [[aws]] context or a "
                f"list of them, got {contexts!r:.60}"
            )
        for context in contexts:
            copy = {**table, "context": context}
            note(index, copy)
            out.append(copy)
    return out


def _listed(service: dict[str, Any]) -> bool:
    """A ``[[service]]`` that names one service (not a discovery pattern)."""
    if service.get("discover") is True:
        return False
    names = (service.get("cluster"), service.get("service"))
    return all(isinstance(n, str) and not is_pattern(n) for n in names)


def _patterns(kind: str, index: int, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) and value:
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise ValueError(
        f'{kind} #{index}.services: expected "*", a pattern such as "web-*" or a list of '
        f"them, got {value!r:.60}"
    )


def _matches(pattern: str, service: dict[str, Any]) -> bool:
    cluster = str(service.get("cluster"))
    name = str(service.get("service"))
    context = service.get("context")
    key = service_key(context if isinstance(context, str) else None, cluster, name)
    label = service.get("label")
    names = [name, short_name(name), key]
    if isinstance(label, str):
        names.append(label)
    return any(fnmatch.fnmatchcase(n, pattern) for n in names)


_TABLE_REF = re.compile(r"\b(service|metric|probe|rule) #(\d+)\b")


def written_as(message: str, origins: dict[tuple[str, int], str]) -> str:
    """``message`` with every expanded table it names (``rule #201``) named as it is
    written in the file (``rule #2 (for staging-us:shop/web-000)``)."""
    if not origins:
        return message

    def name(match: re.Match[str]) -> str:
        return origins.get((match.group(1), int(match.group(2)) - 1), match.group(0))

    return _TABLE_REF.sub(name, message)


def check_placeholders(at: str, value: Any, *, query: bool = False) -> None:
    """Raise unless every ``{name}`` in ``value`` (text, or texts in a list or table)
    is one of :data:`PLACEHOLDERS`; ``at`` is the key, for the message."""
    texts: list[str] = []
    if isinstance(value, str):
        texts = [value]
    elif isinstance(value, list):
        texts = [v for v in value if isinstance(v, str)]
    elif isinstance(value, dict):
        texts = [t for item in value.items() for t in item if isinstance(t, str)]
    for text in texts:
        for match in _PLACEHOLDER.finditer(text):
            if match.group(1) in PLACEHOLDERS:
                continue
            if query and _DATADOG_GROUP.search(text, 0, match.start()):
                continue
            raise ValueError(
                f"{at}: expected only the placeholders {{service}}, {{cluster}} or "
                f"{{context}}, got {match.group(0)!r:.60}"
            )


def fill(value: Any, values: dict[str, str]) -> Any:
    """``value`` with every known placeholder replaced (texts, lists and tables)."""
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), value)
    if isinstance(value, list):
        return [fill(v, values) for v in value]
    if isinstance(value, dict):
        return {fill(k, values): fill(v, values) for k, v in value.items()}
    return value


def placeholders_of(service: dict[str, Any]) -> dict[str, str]:
    """What the placeholders stand for, for one ``[[service]]`` table."""
    context = service.get("context")
    return {
        "service": short_name(str(service.get("service"))),
        "cluster": short_name(str(service.get("cluster"))),
        "context": context if isinstance(context, str) else DEFAULT_CONTEXT,
    }


def expand(
    kind: str,
    index: int,
    table: dict[str, Any],
    services: list[dict[str, Any]],
    *,
    discovering: bool = False,
) -> list[dict[str, Any]]:
    """One template's copies, one per matched service.

    Raises:
        ValueError: A bad ``services``, an unknown placeholder, a ``service`` set too,
            a name without a placeholder that would repeat, or (with no discovery
            configured) a pattern that matches no service.
    """
    at = f"{kind} #{index}"
    patterns = _patterns(kind, index, table["services"])
    if "service" in table:
        raise ValueError(
            f"{at}.service: expected either service or services (a template), not both"
        )
    for key, value in table.items():
        check_placeholders(f"{at}.{key}", value, query=key == "query")
    matched = [s for s in services if any(_matches(p, s) for p in patterns)]
    if not matched and not discovering:
        raise ValueError(
            f"{at}.services: expected a pattern that matches a [[service]], "
            f"got {table['services']!r:.60}"
        )
    name = table.get("name")
    if len(matched) > 1 and isinstance(name, str) and not _PLACEHOLDER.search(name):
        raise ValueError(
            f"{at}.name: expected a placeholder such as {{service}} in a template's name "
            f"(it matches {len(matched)} services), got {name!r:.60}"
        )
    copies = []
    for service in matched:
        values = placeholders_of(service)
        copy = {k: fill(v, values) for k, v in table.items() if k != "services"}
        context = service.get("context")
        copy["service"] = service_key(
            context if isinstance(context, str) else None,
            str(service.get("cluster")),
            str(service.get("service")),
        )
        copies.append(copy)
    return copies
