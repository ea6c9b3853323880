"""The confirmation of a destructive action: it names the exact target.

Outside production, ``y`` confirms. In production the operator types the service's
name and presses Enter. Enter alone never confirms anything, so a stray double Enter
cannot roll back production; ``escape`` or ``n`` cancels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.markup import escape
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

if TYPE_CHECKING:
    from textual.app import ComposeResult

    from engine.actions import Plan


class ConfirmScreen(ModalScreen[bool]):
    """Dismisses with ``True`` only on an explicit confirmation."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", tooltip="Do nothing", id="confirm.cancel"),
    ]

    def __init__(self, plan: Plan, *, read_only: bool = False) -> None:
        super().__init__(id="confirm")
        self.plan = plan
        self.read_only = read_only

    @property
    def typed(self) -> bool:
        """Whether the operator must type the service name (production)."""
        return self.plan.production

    def compose(self) -> ComposeResult:
        plan = self.plan
        with Vertical(id="confirm-box") as box:
            box.border_title = plan.title
            box.set_class(plan.production, "-production")
            rows = [
                ("action", plan.verb.words.lower()),
                ("environment", plan.environment + ("  PRODUCTION" if plan.production else "")),
                ("cluster", plan.cluster),
                ("service", plan.service),
                ("revision", plan.change),
                ("kind", plan.kind),
                ("does", plan.effect),
                ("API call", plan.call.describe() if plan.call else "none"),
            ]
            text = "\n".join(f"[b]{k:<12}[/b] {escape(v)}" for k, v in rows)
            yield Static(text, id="confirm-target")
            if self.read_only:
                yield Static(
                    "READ-ONLY: this will be refused and written to the audit log.",
                    id="confirm-warning",
                )
            if self.typed:
                yield Static(
                    f"Type [b]{escape(plan.service)}[/b] and press Enter to {plan.verb.words.lower()}; escape cancels.",
                    id="confirm-help",
                )
                yield Input(placeholder=f"type {plan.service}", id="confirm-input")
            else:
                yield Static(
                    f"Press [b]y[/b] to {plan.verb.words.lower()} {escape(plan.label)}; [b]n[/b] or escape cancels.",
                    id="confirm-help",
                )

    def on_mount(self) -> None:
        if self.typed:
            self.query_one("#confirm-input", Input).focus()

    def on_key(self, event: object) -> None:
        key = getattr(event, "key", None)
        if self.typed:
            return
        if key == "y":
            self.dismiss(True)
        elif key == "n":
            self.dismiss(False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip() == self.plan.service:
            self.dismiss(True)
            return
        # Enter on an empty or wrong name does nothing but say so.
        self.query_one("#confirm-help", Static).update(
            f"[b]{escape(event.value.strip() or 'nothing')}[/b] is not [b]{escape(self.plan.service)}[/b]: "
            "type the service name exactly, or press escape."
        )
        self.query_one("#confirm-help", Static).add_class("-wrong")

    def action_cancel(self) -> None:
        self.dismiss(False)
