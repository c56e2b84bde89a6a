"""The restore confirmation: the effect first, Cancel focused, then Replace / Keep both.

It returns ``"replace"``, ``"keep"`` or ``"cancel"`` (Escape, and Enter on the focused
Cancel, both cancel: a stray key never restores anything).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static


@dataclass
class Effect:
    """What a restore would do, worked out (by a dry run) before it is offered."""

    title: str
    summary: str
    lines: list[str] = field(default_factory=list)
    keep_both: bool = False   # offered for a single file that exists on disk
    nothing: bool = False     # the dry run found nothing to change


class ConfirmRestore(ModalScreen[str]):
    BINDINGS = [
        Binding("escape", "choose('cancel')", "Cancel", id="confirm.cancel",
                tooltip="Leave everything as it is"),
    ]

    def __init__(self, effect: Effect) -> None:
        super().__init__()
        self.effect = effect

    def compose(self) -> ComposeResult:
        e = self.effect
        with Vertical(id="confirm"):
            yield Label(e.title, id="confirm-title")
            yield Static(e.summary, id="confirm-summary")
            with VerticalScroll(id="confirm-list"):
                yield Static("\n".join(e.lines) or "(no files change)", markup=False)
            with Horizontal(id="confirm-buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield from self.choices()

    def choices(self) -> ComposeResult:
        """The buttons after Cancel (each dismisses with its id)."""
        e = self.effect
        yield Button("Replace", id="replace", variant="error", disabled=e.nothing,
                     tooltip="Overwrite what is there now (it is kept in the store)")
        if e.keep_both:
            yield Button("Keep both", id="keep", variant="warning",
                         tooltip="Write the old version beside the file, new name")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id or "cancel")

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)
