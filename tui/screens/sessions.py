"""Agent sessions: sessions → prompts → files → a diff → a confirmed undo.

The same data as ``guardian sessions --json``; a prompt (or the whole session) lists the
files it touched and how Guardian knows (a write tool, a Bash window — a span of time, so
"bash?" marks one that overlapped another's); a file shows what it was before against what
is on disk now. ``u`` undoes the selected prompt or the whole session through the core
(``guardian undo``): the dry run's diffstat first, Cancel focused, conflicts skipped unless
the person chooses Force. Every read runs in a thread worker; each pane's in its own group.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, DataTable, Header, Label, Static

from guardian.agents.plan import render_plan
from tui.screens.base import GuardianScreen
from tui.screens.confirm import ConfirmRestore, Effect
from tui.widgets import diffview
from tui.widgets.footer import Keys

if TYPE_CHECKING:
    from guardian.agents.touched import Touched

#: The prompts table's first row: the whole session.
WHOLE = "*"
#: Seconds between checks for new sessions (a read only when the feed saw new versions).
RELOAD_EVERY_S = 3.0
STATE_STYLE = {"created": "green", "modified": "yellow", "deleted": "red"}


class ConfirmUndo(ConfirmRestore):
    """The undo's plan (a diffstat), Cancel focused; Force only when there are conflicts.
    Dismisses with ``"undo"``, ``"force"`` or ``"cancel"``."""

    def __init__(self, effect: Effect, conflicts: int) -> None:
        super().__init__(effect)
        self.conflicts = conflicts

    def choices(self) -> ComposeResult:
        yield Button("Undo", id="undo", variant="error", disabled=self.effect.nothing,
                     tooltip="Put the files back (what is there now is kept in the store)")
        if self.conflicts:
            n = self.conflicts
            yield Button(f"Force ({n} conflict{'s' if n != 1 else ''})", id="force",
                         variant="warning",
                         tooltip="Undo the conflicting files too, over the newer changes "
                                 "(those stay in the store)")


class Sessions(GuardianScreen):
    TITLE = "Sessions"
    BINDINGS = [
        Binding("u", "undo", "Undo", id="sessions.undo",
                tooltip="Undo the selected prompt, or the whole session (the plan first)"),
        Binding("o", "open", "Versions", id="sessions.open",
                tooltip="Every version of the selected file, in the restore browser"),
        Binding("z", "maximize", "Max", id="sessions.maximize",
                tooltip="Give the diff the whole screen (z or Esc again to go back)"),
        Binding("r", "reload", "Reload", id="sessions.reload",
                tooltip="Read the sessions again (new ones also appear by themselves)"),
        Binding("escape", "back", "Back", id="sessions.back", show=False,
                tooltip="Back one pane: diff → files → prompts → sessions"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.items: list[dict[str, Any]] = []
        self.session_id: str | None = None
        self.prompt_id: str | None = None  # None: the whole session
        self.files: list[Touched] = []
        self.files_of: tuple[str, str | None] | None = None  # (session, prompt) listed
        self.file: Touched | None = None
        self.last_result: dict[str, Any] | None = None
        self.loaded_seq = -1

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Vertical(id="sess-top"):
            yield Label("Sessions", id="sess-title", markup=False)
            yield DataTable(id="sess-table", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="sess-bottom"):
            with Vertical(id="sess-left"):
                yield Label("Prompts", id="prompts-title", markup=False)
                yield DataTable(id="prompts-table", cursor_type="row")
                yield Label("Files", id="files-title", markup=False)
                yield DataTable(id="files-table", cursor_type="row")
            with Vertical(id="sess-right"):
                yield Label("", id="sess-diff-title", markup=False)
                with VerticalScroll(id="sess-diff-pane"):
                    yield Static("", id="sess-diff")
        yield Label("enter: next pane · esc: back · u: undo the selected prompt or session",
                    id="sess-status", markup=False)
        yield Keys()

    def on_mount(self) -> None:
        cols = {"sess-table": ("session", "agent", "time span", "prompts", "calls", "files",
                               "refused"),
                "prompts-table": ("#", "prompt", "calls", "time"),
                "files-table": ("path", "did", "by")}
        for tid, names in cols.items():
            t = self.query_one(f"#{tid}", DataTable)
            for name in names:
                t.add_column(name, key=name)
        self.query_one("#sess-table", DataTable).focus()
        self.load_sessions()
        if self.gapp.live:
            self.set_interval(RELOAD_EVERY_S, self.maybe_reload)

    def on_screen_resume(self) -> None:
        self.maybe_reload()

    def maybe_reload(self) -> None:
        if self.is_current and self.gapp.feed.versions != self.loaded_seq:
            self.load_sessions()

    # ----------------------------------------------------------------- sessions
    @work(thread=True, exclusive=True, group="sessions", exit_on_error=False)
    def load_sessions(self) -> None:
        seq = self.gapp.feed.versions
        try:
            items = self.gapp.backend.sessions()
        except Exception as e:  # a store being replaced: say so, keep the screen
            self.app.call_from_thread(self.notify, f"could not read the sessions: {e}",
                                      severity="error")
            return
        self.app.call_from_thread(self._show_sessions, items, seq)

    def _show_sessions(self, items: list[dict[str, Any]], seq: int) -> None:
        app = self.gapp
        self.items, self.loaded_seq = items, seq
        t = self.query_one("#sess-table", DataTable)
        keep = self.session_id
        with app.batch_update():
            t.clear()
            for s in items:
                span = (s["ended_ns"] or s["last_ns"]) - s["started_ns"]
                calls = s["write_calls"] + s["bash_calls"]
                refused = Text(str(s["rejected"]), style="red" if s["rejected"] else "")
                t.add_row(_short(s["id"], 14), s["agent"],
                          f"{app.clock_text(s['started_ns'] / 1e9)} · "
                          f"{app.age(span / 1e9)}", str(s["prompts"]), str(calls),
                          str(len(s["files"])), refused, key=s["id"])
            ids = [s["id"] for s in items]
            if ids:
                t.move_cursor(row=ids.index(keep) if keep in ids else 0)
        self.query_one("#sess-title", Label).update(
            f"Sessions ({len(items)})" if items else
            "Sessions: none recorded (install the hooks: guardian hook install --claude)")
        if not items:
            self._clear_below()
            return
        # Chosen here, not left to the highlight event (none comes when the row stays put).
        self.session_id = keep if keep in ids else ids[0]
        if self.session_id != keep:
            self.prompt_id = None
        self.load_prompts(self.session_id)

    def _clear_below(self) -> None:
        for tid in ("#prompts-table", "#files-table"):
            self.query_one(tid, DataTable).clear()
        self.session_id = self.file = self.files_of = None
        self.files = []
        self._set_diff("", Text(""))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """The cursor moved: what is under it now (a rebuild's stale events change nothing)."""
        t = event.data_table
        if not t.row_count:
            return
        key = t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value
        if key is None:
            return
        if t.id == "sess-table" and key != self.session_id:
            self.session_id, self.prompt_id = key, None
            self.load_prompts(key)
        elif t.id == "prompts-table" and self.session_id is not None:
            prompt = None if key == WHOLE else key
            if prompt != self.prompt_id:
                self.prompt_id = prompt
                self.load_files(self.session_id, prompt)
        elif t.id == "files-table":
            i = int(key)
            if 0 <= i < len(self.files) and self.files[i] is not self.file:
                self.file = self.files[i]
                self.show_diff(self.file, self.scope())

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter: the next pane to the right."""
        nxt = {"sess-table": "#prompts-table", "prompts-table": "#files-table",
               "files-table": "#sess-diff-pane"}.get(event.data_table.id or "")
        if nxt:
            self.query_one(nxt).focus()

    def action_back(self) -> None:
        if self.has_class("maximized"):
            self.action_maximize()
            return
        back = {"sess-diff-pane": "#files-table", "files-table": "#prompts-table",
                "prompts-table": "#sess-table"}
        focused = self.focused
        if focused is not None and focused.id in back:
            self.query_one(back[focused.id]).focus()

    # ----------------------------------------------------------------- prompts and files
    @work(thread=True, exclusive=True, group="prompts", exit_on_error=False)
    def load_prompts(self, session: str) -> None:
        found = self.gapp.backend.sessions(session)
        prompts = found[0].get("prompt_list", []) if found else []
        self.app.call_from_thread(self._show_prompts, session, found[0] if found else {},
                                  prompts)

    def _show_prompts(self, session: str, s: dict[str, Any],
                      prompts: list[dict[str, Any]]) -> None:
        if session != self.session_id:
            return
        app = self.gapp
        t = self.query_one("#prompts-table", DataTable)
        keep = self.prompt_id
        with app.batch_update():
            t.clear()
            calls = s.get("write_calls", 0) + s.get("bash_calls", 0)
            t.add_row("all", Text("whole session", style="bold"), str(calls), "", key=WHOLE)
            for p in prompts:
                text = (p["text"] or "").replace("\n", " ")
                t.add_row(str(p["id"]), _short(text, 60), str(len(p["calls"])),
                          app.clock_text(p["started_ns"] / 1e9), key=str(p["id"]))
            keys = [WHOLE, *(str(p["id"]) for p in prompts)]
            row = keys.index(keep) if keep in keys else 0
            t.move_cursor(row=row)
        self.query_one("#prompts-title", Label).update(
            f"Prompts of {_short(session, 13)} ({len(prompts)})")
        self.prompt_id = None if keys[row] == WHOLE else keys[row]
        self.load_files(session, self.prompt_id)

    def scope(self) -> str:
        if self.prompt_id is not None:
            return f"prompt {self.prompt_id}"
        return f"session {_short(self.session_id or '', 13)}"

    @work(thread=True, exclusive=True, group="files", exit_on_error=False)
    def load_files(self, session: str, prompt: str | None) -> None:
        b = self.gapp.backend
        files = b.touched(prompt=prompt) if prompt is not None else b.touched(session=session)
        self.app.call_from_thread(self._show_files, session, prompt, files)

    def _show_files(self, session: str, prompt: str | None, files: list[Touched]) -> None:
        if (session, prompt) != (self.session_id, self.prompt_id):
            return
        app = self.gapp
        keep = self.file.path if self.file is not None else None
        self.files, self.files_of = files, (session, prompt)
        t = self.query_one("#files-table", DataTable)
        with app.batch_update():
            t.clear()
            for i, f in enumerate(files):
                t.add_row(self.shown(f), Text(f.state,
                          style=STATE_STYLE.get(f.state, "")), _by(f), key=str(i))
            paths = [f.path for f in files]
            if files:
                t.move_cursor(row=paths.index(keep) if keep in paths else 0)
        amb = sum(1 for f in files if f.ambiguous)
        self.query_one("#files-title", Label).update(
            f"Files of {self.scope()} ({len(files)}" + (f" · {amb} ambiguous" if amb else "")
            + ")")
        if not files:
            self.file = None
            self._set_diff(f"{self.scope()} changed no file", Text(""))
            return
        self.file = files[paths.index(keep) if keep in paths else 0]
        self.show_diff(self.file, self.scope())

    def shown(self, f: Touched) -> str:
        """A file as the tables show it: inside its root (the root's name too if several)."""
        if len(self.gapp.roots()) == 1:
            return os.fsdecode(f.relpath)
        return self.gapp.short_path(f.path)

    # ----------------------------------------------------------------- the diff
    @work(thread=True, exclusive=True, group="diff", exit_on_error=False)
    def show_diff(self, f: Touched, scope: str) -> None:
        app = self.gapp
        b = app.backend
        root = app.root(f.root_id)
        before = b.content(f.before) if f.before is not None else None
        now = b.on_disk(root, f.relpath) if root is not None else None
        old_label = (f"before {scope} (version {f.before.id})" if f.before is not None
                     and f.before.present else f"before {scope}: absent")
        theme = "ansi_light" if not app.current_theme.dark else "ansi_dark"
        if f.before is not None and f.before.present and before is None:
            body: Any = Text(f"version {f.before.id} was kept as metadata only (over the size "
                             "cap): its bytes are not in the store")
        elif before is None and now is None:
            body = Text("absent before and absent now", style="dim")
        else:
            body = diffview.unified(before, now, old_label, "on disk now", theme)
        amb = " (ambiguous window)" if f.ambiguous else ""
        title = f"{self.shown(f)}: {f.state} by {_by(f).plain.rstrip('?')}{amb}"
        app.call_from_thread(self._set_diff, title, body)

    def _set_diff(self, title: str, body: Any) -> None:
        self.query_one("#sess-diff-title", Label).update(title)
        self.query_one("#sess-diff", Static).update(body)

    def action_maximize(self) -> None:
        self.toggle_class("maximized")

    def action_open(self) -> None:
        if self.file is None:
            self.notify("select a file first", severity="warning")
            return
        self.gapp.open_in_restore(self.file.path)

    def action_reload(self) -> None:
        self.load_sessions()

    # ----------------------------------------------------------------- undo
    def action_undo(self) -> None:
        if self.session_id is None:
            self.notify("no session selected", severity="warning")
            return
        self.undo(self.session_id, self.prompt_id)

    @work(exclusive=True, group="undo")
    async def undo(self, session: str, prompt: str | None) -> None:
        app = self.gapp
        b = app.backend
        what = (f"prompt {prompt} of session {_short(session, 24)}" if prompt is not None
                else f"session {_short(session, 24)}")
        target: dict[str, Any] = {"prompt": prompt} if prompt is not None else \
            {"session": session}
        try:
            plan = await asyncio.to_thread(lambda: b.undo(**target, dry_run=True))
        except Exception as e:
            self.notify(f"cannot undo {what}: {e}", severity="error")
            return
        effect, conflicts = plan_effect(plan, what)
        choice = await app.push_screen_wait(ConfirmUndo(effect, conflicts))
        if choice not in ("undo", "force"):
            self.notify("cancelled: nothing changed", timeout=2)
            return
        try:
            out = await asyncio.to_thread(lambda: b.undo(**target, force=choice == "force"))
        except Exception as e:
            self.notify(f"undo failed, nothing was undone: {e}", severity="error")
            return
        self.last_result = out
        lines = render_plan(out, choice == "force", "skipped").splitlines()
        again = f" · select {out['session']} and press u to undo this undo" \
            if out.get("session") else ""
        self.query_one("#sess-status", Label).update(f"{lines[-1].strip()}{again}")
        self.notify(f"undid {what}: {lines[-1].strip()}",
                    severity="warning" if out["skipped"] else "information")
        self.load_sessions()
        if self.session_id is not None:
            self.load_files(self.session_id, self.prompt_id)


def plan_effect(plan: dict[str, Any], what: str) -> tuple[Effect, int]:
    """The dry run as the confirmation shows it: the diffstat, conflicts marked ``!``."""
    lines = render_plan(plan, False, "Force undoes it anyway").splitlines()
    conflicts = sum(1 for f in plan["files"] if f["skipped"] == "conflict")
    summary = lines[-1].strip()
    if conflicts:
        summary += (f" · {conflicts} conflict{'s' if conflicts != 1 else ''} (!): changed "
                    "since, skipped unless you choose Force")
    return Effect(title=f"Undo {what}?", summary=summary, lines=lines[1:-1],
                  nothing=plan["changed"] == 0), conflicts


def _by(f: Touched) -> Text:
    by = "+".join("bash" if h == "window" else h for h in f.by)
    return Text(by + "?", style="yellow") if f.ambiguous else Text(by)


def _short(s: str, n: int) -> str:
    return s if len(s) <= n else s[:n - 1] + "…"

