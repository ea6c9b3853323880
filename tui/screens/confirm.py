"""The confirmation of a destructive action: it names the exact target.

Outside production, ``y`` confirms. In production the operator types the service's
name exactly (no trimming: ``web `` is not ``web``) and presses Enter. Enter alone
never confirms anything, so a stray double Enter cannot roll back production;
``escape`` or ``n`` cancels.

Nothing is confirmed from a dialog the operator could not read: while the terminal is
too small to show the whole dialog (the API call and the line that says which key
confirms included), the dialog says so and refuses to confirm.

Every value shown (service, environment, revision, the error of a previous attempt)
is outside text: it is shown literally (``Text``), never read as markup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.geometry import Region
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from widgets.safe import LONG, clean

if TYPE_CHECKING:
    from textual import events
    from textual.app import ComposeResult

    from engine.actions import Plan


class ConfirmBox(Vertical):
    """The dialog's frame; tells its screen when its size changed (a wider terminal
    unwraps it, a narrower one wraps it taller) so the screen checks it still fits."""

    def on_resize(self) -> None:
        screen = self.screen
        if isinstance(screen, ConfirmScreen):
            screen.call_after_refresh(screen.readable)


class ConfirmScreen(ModalScreen[bool]):
    """Dismisses with ``True`` only on an explicit confirmation from a readable dialog."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", tooltip="Do nothing", id="confirm.cancel"),
    ]

    DEFAULT_CSS = """
    ConfirmScreen > #confirm-small {
        dock: top; width: 100%; height: auto; display: none;
        background: $error; color: $text; text-style: bold; padding: 0 1;
    }
    ConfirmScreen.-too-small > #confirm-small { display: block; }
    ConfirmScreen.-too-small > #confirm-box { opacity: 0%; }
    """

    def __init__(self, plan: Plan) -> None:
        super().__init__(id="confirm")
        self.plan = plan

    @property
    def typed(self) -> bool:
        """Whether the operator must type the service name (production)."""
        return self.plan.production

    def compose(self) -> ComposeResult:
        plan = self.plan
        verb = plan.verb.words.lower()
        yield Static("", id="confirm-small")
        with ConfirmBox(id="confirm-box") as box:
            box.border_title = Text(clean(plan.title, 80))
            box.set_class(plan.production, "-production")
            rows = [
                ("action", verb),
                (
                    "environment",
                    clean(plan.environment) + ("  PRODUCTION" if plan.production else ""),
                ),
                *((("account", clean(plan.where)),) if plan.context is not None else ()),
                ("cluster", clean(plan.cluster)),
                ("service", clean(plan.service)),
                ("revision", clean(plan.change)),
                ("kind", clean(plan.kind)),
                ("does", clean(plan.effect, LONG)),
                ("API call", clean(plan.call.describe(), LONG) if plan.call else "none"),
            ]
            target = Text()
            for i, (key, value) in enumerate(rows):
                if i:
                    target.append("\n")
                target.append(f"{key:<12}", "bold")
                target.append(f" {value}")
            yield Static(target, id="confirm-target")
            if self.typed:
                yield Static(self._type_help(), id="confirm-help")
                yield Input(placeholder=f"type {clean(plan.service, 60)}", id="confirm-input")
            else:
                help_text = Text.assemble(
                    "Press ",
                    ("y", "bold"),
                    f" to {verb} {clean(plan.label)}; ",
                    ("n", "bold"),
                    " or escape cancels.",
                )
                yield Static(help_text, id="confirm-help")

    def _type_help(self) -> Text:
        return Text.assemble(
            "Type ",
            (clean(self.plan.service), "bold"),
            f" and press Enter to {self.plan.verb.words.lower()}; escape cancels.",
        )

    def on_mount(self) -> None:
        if self.typed:
            self.query_one("#confirm-input", Input).focus()
        self.call_after_refresh(self.readable)

    def on_resize(self, event: events.Resize) -> None:
        self.call_after_refresh(self.readable)

    def readable(self) -> bool:
        """Whether the whole dialog is on screen (else say so, and hide it).

        The box is laid out even while hidden, so this knows when it fits again.
        """
        box = self.query_one("#confirm-box")
        needed = box.outer_size
        fits = (
            box.region.height > 0
            and Region(0, 0, *self.size).contains_region(box.region)
            and needed.height <= self.size.height
            and needed.width <= self.size.width
        )
        if not fits:
            width, height = self.size
            self.query_one("#confirm-small", Static).update(
                Text(
                    f"Terminal too small to show this confirmation ({width}x{height}; it "
                    f"needs {needed.width}x{needed.height}): nothing can be confirmed. "
                    "Enlarge the terminal, or press escape to cancel."
                )
            )
        self.set_class(not fits, "-too-small")
        return fits

    def on_key(self, event: events.Key) -> None:
        if self.typed:
            return
        if event.key == "y":
            event.stop()
            if self.readable():
                self.dismiss(True)
        elif event.key == "n":
            event.stop()
            self.dismiss(False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        help_line = self.query_one("#confirm-help", Static)
        if event.value == self.plan.service:  # exactly: "web " is not "web"
            if self.readable():
                self.dismiss(True)
            return
        # Enter on an empty or wrong name does nothing but say so.
        help_line.update(
            Text.assemble(
                (repr(clean(event.value, 80)) if event.value else "nothing", "bold"),
                " is not ",
                (clean(self.plan.service), "bold"),
                ": type the service name exactly, or press escape.",
            )
        )
        help_line.add_class("-wrong")

    def action_cancel(self) -> None:
        self.dismiss(False)
