"""Outside text as Rich ``Text``, for widgets: never markup, never a control character.

Every widget that shows a value it did not write (a service name, an ECS reason, a
Sentry title, a Datadog tag, an AWS error) goes through here: :func:`engine.text.clean`
makes it visible and bounded, and the result is a ``Text`` whose characters are shown
as they are. ``[bold]`` or ``[/]`` in a value is text, not style; there is no
``Text.from_markup`` and no f-string handed to a markup parser anywhere on this path.
"""

from __future__ import annotations

from rich.text import Text

from engine.text import LIMIT, LONG, clean

__all__ = ["LIMIT", "LONG", "add", "clean", "markup_literal", "safe_text"]


def safe_text(
    value: object, style: str = "", *, limit: int | None = LIMIT, multiline: bool = False
) -> Text:
    """A ``Text`` showing ``value`` literally, cleaned and bounded (see
    :func:`engine.text.clean`), in ``style``."""
    return Text(clean(value, limit, multiline=multiline), style=style)


def add(text: Text, value: object, style: str = "", *, limit: int | None = LIMIT) -> Text:
    """Append ``value`` to ``text``, cleaned and bounded, in ``style`` (returns ``text``)."""
    return text.append(clean(value, limit), style)


def markup_literal(value: object, limit: int | None = LIMIT) -> str:
    """``value`` cleaned, as Textual markup that shows it literally: for the few Textual
    APIs that take nothing but a markup string (command palette titles and help).

    Textual's own ``escape`` leaves ``[Foo]`` and ``[0]`` alone, and the parser drops
    them; a backslash before every ``[`` makes each one text (the parser removes exactly
    that backslash, and a tag never starts after one).
    """
    return clean(value, limit).replace("[", "\\[")
