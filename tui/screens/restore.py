"""The restore browser: every path the store knows → its versions → a diff → a confirmed restore.

The tree is built from the store, not the disk, so deleted files are there (struck through;
``d`` hides them). Filtering is debounced and runs in a worker; so do the version list and
the diff, each in its own exclusive group, so keys always answer. Nothing is restored before
:class:`~tui.screens.confirm.ConfirmRestore` has shown the effect and the person chose.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Header, Input, Label, Static, Tree
from textual.widgets.tree import TreeNode

from guardian.paths import Root
from guardian.store.db import Version
from tui.backend import Entry, Listing
from tui.screens.attime import AtTime
from tui.screens.base import GuardianScreen
from tui.screens.confirm import ConfirmRestore, Effect
from tui.widgets import diffview
from tui.widgets.footer import Keys

if TYPE_CHECKING:
    pass

STATES = ("any", "modified", "created", "deleted", "rejected")
#: Files a filter shows at most (the tree stays fast; the title says when there were more).
MAX_MATCHES = 500
#: Children a directory shows at most (a filter finds the others).
MAX_CHILDREN = 1000
#: Versions whose ±lines are worked out (newest first).
COUNTED = 100
DEBOUNCE_S = 0.15
WIDE = 140  # columns from which the diff is split side by side


@dataclass
class TreeView:
    """What the tree worker read: a filter's matches, or the open directories' listings."""

    gen: int
    seq: int
    total: int
    roots: list[Root]
    matches: list[Entry] | None = None
    listing: dict[tuple[int, bytes], Listing] = field(default_factory=dict)


@dataclass
class UndoStep:
    path: str
    at_ns: int
    what: str


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "K", "M", "G"):
        if n < 1024:
            return f"{n}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n = n / 1024  # type: ignore[assignment]
    return f"{n:.1f}T"


class Restore(GuardianScreen):
    TITLE = "Restore"
    BINDINGS = [
        # The actions first: the footer shows as many as the width allows, in this order,
        # and at 80 columns the last ones are cut.
        Binding("r", "restore", "Restore", id="restore.restore",
                tooltip="Restore the selected version (shows the effect first)"),
        Binding("u", "undo", "Undo", id="restore.undo",
                tooltip="Put back what the last restore replaced"),
        Binding("t", "at_time", "At time", id="restore.at_time",
                tooltip="Restore the selected directory as it was at a time"),
        Binding("left_square_bracket", "older", "Older", key_display="[", id="restore.older",
                tooltip="Select the next older version"),
        Binding("right_square_bracket", "newer", "Newer", key_display="]", id="restore.newer",
                tooltip="Select the next newer version"),
        Binding("m", "mark", "Mark", id="restore.mark",
                tooltip="Mark this version: the diff then compares it with the selected one"),
        Binding("p", "preview", "Preview", id="restore.preview",
                tooltip="The whole selected version instead of the diff"),
        Binding("slash", "filter", "Filter", id="restore.filter",
                tooltip="Type part of a path (Enter or Esc back to the tree)"),
        Binding("d", "toggle_deleted", "Deleted", id="restore.deleted",
                tooltip="Show or hide deleted files"),
        Binding("s", "state", "State", id="restore.state",
                tooltip="Only files modified, created, deleted or rejected"),
        Binding("w", "split", "Split", id="restore.split",
                tooltip="Side-by-side or unified diff"),
        Binding("z", "maximize", "Max", id="restore.maximize",
                tooltip="Give the diff pane the whole screen (z or Esc again to go back)"),
        Binding("R", "reload", "Reload", id="restore.reload", show=False,
                tooltip="Read the store's paths again"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.hide_deleted = False
        self.state = "any"
        self.text = ""
        self.entry: Entry | None = None
        self.versions: list[Version] = []
        self.marked: Version | None = None
        self.previewing = False
        self.split: bool | None = None  # None: by the terminal's width
        #: A path to select and focus once the tree is shown (alerts' "go to file").
        self.pending: tuple[int, bytes] | None = None
        self.undo_step: UndoStep | None = None
        self.tree_ready = False  # the first tree is shown
        self.tree_gen = self.shown_gen = 0  # the tree asked for, and the one shown
        self.tree_seq = -1  # the feed's version count when the tree was read
        self.loaded: set[int] = set()  # the ids of the nodes whose children are in
        self.searching = False  # a filter was typed and is not applied yet
        self.queued_moves = 0  # Down/Up pressed while a filtered tree was on its way

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Horizontal(id="browser"):
            with Vertical(id="left"):
                yield Input(placeholder="/ filter paths", id="filter")
                yield Label("", id="tree-state")
                yield Tree[Entry]("store", id="paths")
            with Vertical(id="right"):
                yield Label("select a file or a directory", id="file-title", markup=False)
                yield DataTable(id="versions", cursor_type="row", zebra_stripes=True)
                yield Label("", id="diff-title", markup=False)
                with VerticalScroll(id="diff-pane"):
                    yield Static("", id="diff")
        yield Keys()

    def on_mount(self) -> None:
        t = self.query_one("#versions", DataTable)
        for name in ("id", "time", "age", "kind", "origin", "size", "±lines", "valid",
                     "session"):
            t.add_column(name, key=name)
        tree = self.query_one("#paths", Tree)
        tree.show_root = False
        tree.guide_depth = 2
        tree.focus()
        self.rebuild()

    def on_screen_resume(self) -> None:
        if self.tree_ready and self.gapp.feed.versions != self.tree_seq:
            self.rebuild(keep=True)

    # ----------------------------------------------------------------- the tree
    # Lazy: a directory's children are read from the store when it is first expanded; a
    # filter asks the store for its matches (capped). Every read runs in a thread worker;
    # ``tree_gen`` drops the answer to a question that is no longer asked.
    def rebuild(self, *, keep: bool = False) -> None:
        """Read the tree again for the current filter; ``keep``: the selection stays (else
        a filter selects its first match)."""
        self.tree_gen += 1
        e = self.entry
        reveal = self.pending or ((e.root_id, e.relpath) if keep and e is not None else None)
        self.load_tree(self.tree_gen, self.text, self.state, self.hide_deleted, reveal)

    @work(thread=True, exclusive=True, group="tree", exit_on_error=False)
    def load_tree(self, gen: int, text: str, state: str, hide_deleted: bool,
                  reveal: tuple[int, bytes] | None) -> None:
        app = self.gapp
        b = app.backend
        seq = app.feed.versions
        roots = sorted(app.roots(), key=lambda r: r.id)
        view = TreeView(gen, seq, b.path_count(), roots)
        if text or state != "any":
            root_id, needle = self.needle(roots, text)
            view.matches = b.search(needle, root_id=root_id,
                                    state=None if state == "any" else state,
                                    live_only=hide_deleted, limit=MAX_MATCHES + 1)
        else:
            wanted = [(r.id, b"") for r in roots]
            if reveal is not None:  # the directories down to the selection, open
                parts = reveal[1].split(b"/")[:-1]
                wanted += [(reveal[0], b"/".join(parts[:i])) for i in range(1, len(parts) + 1)]
            for rid, d in wanted:
                view.listing[(rid, d)] = b.children(rid, d, MAX_CHILDREN)
        self.app.call_from_thread(self._show_tree, view, reveal)

    @staticmethod
    def needle(roots: list[Root], text: str) -> tuple[int | None, str]:
        """A filter's root (an absolute path inside one names it) and its text."""
        for r in roots:
            prefix = str(r.path) + "/"
            if text.startswith(prefix):
                return r.id, text[len(prefix):]
        return None, text

    @property
    def filtering(self) -> bool:
        return bool(self.text) or self.state != "any"

    def keep(self, e: Entry) -> bool:
        return not (self.hide_deleted and not e.live)

    def label(self, e: Entry) -> Text:
        name = e.name + ("/" if e.is_dir else "")
        style = "strike dim" if not e.live else ("bold" if e.is_dir else "")
        t = Text(name, style=style)
        if e.is_dir and e.files:
            t.append(f" {e.files:,}", style="dim")
        if not e.is_dir and e.valid is False:
            t.append(" ✗", style="red")
        if not e.is_dir and not e.live:
            t.append(" deleted", style="dim italic")
        return t

    def _show_tree(self, view: TreeView, reveal: tuple[int, bytes] | None) -> None:
        if view.gen != self.tree_gen:
            return  # a newer question is on its way
        tree: Tree[Entry] = self.query_one("#paths", Tree)
        moves, self.queued_moves = self.queued_moves, 0
        self.tree_ready, self.tree_seq, self.loaded = True, view.seq, set()
        self.shown_gen = view.gen
        tree.clear()
        target: TreeNode[Entry] | None = None
        for root in view.roots:
            top = Entry(root.id, b"", True, True)
            node = tree.root.add(Text(str(root.path), style="bold"), data=top, expand=True)
            if view.matches is None:
                found = self.fill(node, view.listing, reveal)
            else:
                found = self.add_matches(node, root.id, view.matches, reveal)
            target = target or found
        shown = "" if view.matches is None else (
            f" · {min(len(view.matches), MAX_MATCHES)}"
            f"{'+' if len(view.matches) > MAX_MATCHES else ''} match")
        self.query_one("#tree-state", Label).update(
            f"{view.total:,} paths · state: {self.state} (s) · deleted "
            f"{'hidden' if self.hide_deleted else 'shown'} (d){shown}")
        def place(node: TreeNode[Entry] | None = target) -> None:
            # Laid out by now. No target (a new whole tree): keys queued move from the top.
            if node is not None:
                tree.move_cursor(node)
            elif moves:
                tree.cursor_line = 0
            for _ in range(abs(moves)):  # keys pressed while the tree was on its way
                tree.action_cursor_down() if moves > 0 else tree.action_cursor_up()

        self.call_after_refresh(place)
        if target is not None:
            if target.data is not None and not moves:
                self.select(target.data)
            if self.pending is not None and reveal == self.pending:
                tree.focus()
        self.pending = None

    def fill(self, node: TreeNode[Entry], listing: dict[tuple[int, bytes], Listing],
             reveal: tuple[int, bytes] | None) -> TreeNode[Entry] | None:
        """Add the children of ``node`` that ``listing`` holds (and, below them, the open
        directories down to ``reveal``); the node for ``reveal`` if it was added."""
        assert node.data is not None
        e = node.data
        entries, more = listing[(e.root_id, e.relpath)]
        self.loaded.add(node.id)
        found = None
        for child in entries:
            if not self.keep(child):
                continue
            if child.is_dir:
                sub = node.add(self.label(child), data=child, allow_expand=True)
                if (child.root_id, child.relpath) in listing:
                    sub.expand()
                    found = self.fill(sub, listing, reveal) or found
            else:
                sub = node.add_leaf(self.label(child), data=child)
            if reveal == (child.root_id, child.relpath):
                found = sub
        if more:
            node.add_leaf(Text(f"… more than {MAX_CHILDREN:,}: / filters them",
                               style="dim italic"))
        return found

    def add_matches(self, node: TreeNode[Entry], root_id: int, matches: list[Entry],
                    reveal: tuple[int, bytes] | None) -> TreeNode[Entry] | None:
        """The matches under this root, with their directories expanded; the node to select
        (``reveal`` if it matched, else the first match)."""
        dirs: dict[bytes, TreeNode[Entry]] = {b"": node}
        first = chosen = None
        for e in matches[:MAX_MATCHES]:
            if e.root_id != root_id:
                continue
            parts = e.relpath.split(b"/")
            for i in range(1, len(parts)):
                d = b"/".join(parts[:i])
                if d not in dirs:
                    live = any(m.live for m in matches if m.root_id == root_id
                               and m.relpath.startswith(d + b"/"))
                    de = Entry(root_id, d, True, live)
                    dirs[d] = dirs[b"/".join(parts[:i - 1])].add(self.label(de), data=de,
                                                                 expand=True)
            leaf = dirs[b"/".join(parts[:-1])].add_leaf(self.label(e), data=e)
            first = first or leaf
            if reveal == (e.root_id, e.relpath):
                chosen = leaf
        return chosen or first

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[Entry]) -> None:
        node = event.node
        if node.data is not None and node.data.is_dir and node.id not in self.loaded:
            self.loaded.add(node.id)
            self.load_dir(self.tree_gen, node)

    @work(thread=True, group="dir", exit_on_error=False)
    def load_dir(self, gen: int, node: TreeNode[Entry]) -> None:
        assert node.data is not None
        e = node.data
        listing = {(e.root_id, e.relpath): self.gapp.backend.children(e.root_id, e.relpath,
                                                                      MAX_CHILDREN)}
        self.app.call_from_thread(self._show_dir, gen, node, listing)

    def _show_dir(self, gen: int, node: TreeNode[Entry],
                  listing: dict[tuple[int, bytes], Listing]) -> None:
        if gen == self.tree_gen:
            self.fill(node, listing, None)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[Entry]) -> None:
        if event.node.data is not None:
            self.select(event.node.data)

    def on_tree_node_selected(self, event: Tree.NodeSelected[Entry]) -> None:
        """Enter on a file: its versions, to pick one (Esc comes back to the tree)."""
        if event.node.data is not None and not event.node.data.is_dir:
            self.set_focus(self.query_one("#versions", DataTable))

    @on(Input.Changed, "#filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.searching = True
        self.debounce(event.value)

    @work(exclusive=True, group="filter")
    async def debounce(self, value: str) -> None:
        await asyncio.sleep(DEBOUNCE_S)
        self.apply_filter(value)

    def apply_filter(self, value: str) -> None:
        self.searching = False
        if value.strip() != self.text:
            self.text = value.strip()
            self.rebuild()

    @on(Input.Submitted, "#filter")
    def filter_done(self) -> None:
        self.to_tree()

    def to_tree(self) -> None:
        """From the filter to the tree: the filter as typed applies now."""
        if self.searching:
            self.workers.cancel_group(self, "filter")
            self.apply_filter(self.query_one("#filter", Input).value)
        self.set_focus(self.query_one("#paths", Tree))

    def on_key(self, event: events.Key) -> None:
        box = self.query_one("#filter", Input)
        tree = self.query_one("#paths", Tree)
        if box.has_focus:
            if event.key in ("escape", "down", "tab"):  # into the tree
                self.to_tree()
                event.stop()
                event.prevent_default()
            elif event.is_printable and event.character:
                # Typed right after "/" (a terminal sends keys typed fast in one read): it
                # went to the tree before the filter took the focus; the filter would have
                # taken it (and stopped it) otherwise. It is the filter's.
                box.insert_text_at_cursor(event.character)
                event.stop()
        elif event.key == "escape":
            if self.has_class("maximized"):
                self.action_maximize()
            else:
                self.set_focus(tree)
            event.stop()
        elif tree.has_focus and event.key in ("down", "up") and (
                self.searching or self.tree_gen != self.shown_gen):
            # The tree for what was just typed is on its way: these keys move in it.
            self.queued_moves += 1 if event.key == "down" else -1
            event.stop()
            event.prevent_default()

    def on_paste(self, event: Any) -> None:
        """Text pasted anywhere here is a filter."""
        box = self.query_one("#filter", Input)
        if not box.has_focus:
            self.set_focus(box)
            box.insert_text_at_cursor(event.text.strip().lstrip("/"))
            event.stop()

    def action_filter(self) -> None:
        # At once, not after a refresh (Widget.focus): keys typed right after "/" are the
        # filter's, never the tree's bindings.
        self.set_focus(self.query_one("#filter", Input))

    def action_toggle_deleted(self) -> None:
        self.hide_deleted = not self.hide_deleted
        self.rebuild()

    def action_state(self) -> None:
        self.state = STATES[(STATES.index(self.state) + 1) % len(STATES)]
        self.rebuild()

    def action_reload(self) -> None:
        self.rebuild(keep=True)

    def focus_path(self, path: str) -> None:
        """Show ``path`` (absolute): filter to it and select it (alerts' "go to file")."""
        import os

        for r in self.gapp.roots():
            prefix = str(r.path) + "/"
            if path.startswith(prefix):
                self.pending = (r.id, os.fsencode(path[len(prefix):]))
                break
        self.query_one("#filter", Input).value = path
        self.text = path
        self.searching = False
        self.rebuild()

    # ----------------------------------------------------------------- versions
    def select(self, e: Entry) -> None:
        self.entry = e
        self.marked = None
        root = self.gapp.root(e.root_id)
        shown = root.display(e.relpath) if root else e.relpath.decode(errors="replace")
        kind = "directory" if e.is_dir else ("deleted file" if not e.live else "file")
        hint = " · t: restore it as it was at a time" if e.is_dir else ""
        self.query_one("#file-title", Label).update(f"{kind}: {shown}{hint}")
        self.load_versions(e)

    @work(thread=True, exclusive=True, group="versions", exit_on_error=False)
    def load_versions(self, e: Entry) -> None:
        b = self.gapp.backend
        if e.is_dir:
            vs = b.versions_under(e.root_id, e.relpath, limit=200)
            deltas: dict[int, tuple[int, int] | None] = {}
        else:
            vs = b.versions(e.root_id, e.relpath)
            deltas = {}
            for i, v in enumerate(vs[:COUNTED]):
                older = next((o for o in vs[i + 1:] if o.present), None)
                try:
                    deltas[v.id] = diffview.counts(b.content(older) if older else None,
                                                   b.content(v)) if v.present else None
                except Exception:
                    deltas[v.id] = None
        self.app.call_from_thread(self._show_versions, e, vs, deltas)

    def _show_versions(self, e: Entry, vs: list[Version],
                       deltas: dict[int, tuple[int, int] | None]) -> None:
        if e != self.entry:
            return
        app = self.gapp
        self.versions = vs
        t = self.query_one("#versions", DataTable)
        with app.batch_update():
            t.clear()
            for v in vs:
                d = deltas.get(v.id)
                valid = "-" if v.valid is None else ("ok" if v.valid else Text("✗", "red"))
                kind = Text(v.kind, style="strike" if not v.present else "")
                name = "" if not e.is_dir else "  " + v.relpath.decode(errors="replace")
                t.add_row(str(v.id), app.clock_text(v.time_ns / 1e9),
                          app.age(app.now() - v.time_ns / 1e9), kind, v.origin + name,
                          _size(v.size) if v.present else "-",
                          "" if d is None else f"+{d[0]} −{d[1]}", valid, v.session or "",
                          key=str(v.id))
            if vs:
                t.move_cursor(row=0)
        self.show_diff()

    def current(self) -> Version | None:
        t = self.query_one("#versions", DataTable)
        if not self.versions or not 0 <= t.cursor_row < len(self.versions):
            return None
        return self.versions[t.cursor_row]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "versions":
            self.show_diff()

    def action_older(self) -> None:
        t = self.query_one("#versions", DataTable)
        if t.cursor_row < len(self.versions) - 1:
            t.move_cursor(row=t.cursor_row + 1)

    def action_newer(self) -> None:
        t = self.query_one("#versions", DataTable)
        if t.cursor_row > 0:
            t.move_cursor(row=t.cursor_row - 1)

    def action_mark(self) -> None:
        v = self.current()
        self.marked = None if v is None or self.marked == v else v
        self.notify(f"marked version {v.id}: pick another to compare" if self.marked and v
                    else "mark cleared", timeout=2)
        self.show_diff()

    def action_preview(self) -> None:
        self.previewing = not self.previewing
        self.show_diff()

    def action_split(self) -> None:
        wide = self.size.width >= WIDE
        self.split = not (wide if self.split is None else self.split)
        self.show_diff()

    def action_maximize(self) -> None:
        self.toggle_class("maximized")

    # ----------------------------------------------------------------- the diff pane
    def show_diff(self) -> None:
        v = self.current()
        if self.entry is None or self.entry.is_dir or v is None:
            self.query_one("#diff-title", Label).update(
                "a directory: t restores it as it was at a time" if self.entry
                and self.entry.is_dir else "")
            self.query_one("#diff", Static).update("")
            return
        self.render_diff(self.entry, v, self.marked, self.previewing,
                         self.split if self.split is not None else self.size.width >= WIDE)

    @work(thread=True, exclusive=True, group="diff", exit_on_error=False)
    def render_diff(self, e: Entry, v: Version, marked: Version | None, previewing: bool,
                    split: bool) -> None:
        app = self.gapp
        b = app.backend
        root = app.root(e.root_id)
        assert root is not None
        path = root.display(e.relpath)
        theme = "ansi_light" if not app.current_theme.dark else "ansi_dark"
        new = b.content(v)
        label = f"version {v.id} ({app.clock_text(v.time_ns / 1e9)})"
        if previewing:
            title = f"preview of {label}"
            body = diffview.preview(new, label, path, theme)
        else:
            if marked is not None and marked != v:
                old, old_label = b.content(marked), f"version {marked.id}"
                title = f"{old_label} → {label} (m clears the mark)"
            else:
                old, old_label = b.on_disk(root, e.relpath), "on disk now"
                title = f"restoring {label} over what is on disk now"
                old, new = old, new
            fn = diffview.split if split else None
            body = (fn(old, new, old_label, label, path, theme) if fn else
                    diffview.unified(old, new, old_label, label, theme))
        app.call_from_thread(self._set_diff, title, body)

    def _set_diff(self, title: str, body: Any) -> None:
        self.query_one("#diff-title", Label).update(title)
        self.query_one("#diff", Static).update(body)

    # ----------------------------------------------------------------- restoring
    def action_restore(self) -> None:
        v = self.current()
        if self.entry is None or self.entry.is_dir:
            self.notify("select a file and a version (t restores a directory at a time)",
                        severity="warning")
            return
        if v is None:
            self.notify("no version selected", severity="warning")
            return
        self.restore_file(self.entry, v)

    @work(exclusive=True, group="restore")
    async def restore_file(self, e: Entry, v: Version) -> None:
        app = self.gapp
        b = app.backend
        root = app.root(e.root_id)
        assert root is not None
        path = root.display(e.relpath)
        disk = await asyncio.to_thread(b.on_disk, root, e.relpath)
        data = await asyncio.to_thread(b.content, v)
        if v.present and data is None:
            self.notify(f"version {v.id} was kept as metadata only: it cannot be restored",
                        severity="error")
            return
        try:
            plan = await asyncio.to_thread(b.restore, path, version=v.id, dry_run=True)
        except Exception as ex:
            self.notify(f"restore refused: {ex}", severity="error")
            return
        delta = diffview.counts(disk, data)
        when = app.clock_text(v.time_ns / 1e9)
        if not v.present:
            summary = "the file is deleted (its bytes now stay in the store)"
        elif delta is None:
            summary = "binary content replaced"
        else:
            summary = f"+{delta[0]} −{delta[1]} lines against the file on disk"
        effect = Effect(
            title=f"Restore {path} to version {v.id} ({when})?", summary=summary,
            lines=[f"{c['action']:<6} {c['path']}" for c in plan["changes"]]
            or ["the file is already as that version: nothing to do"],
            keep_both=disk is not None and data is not None,
            nothing=not plan["changes"])
        choice = await app.push_screen_wait(ConfirmRestore(effect))
        if choice == "cancel":
            self.notify("cancelled: nothing changed", timeout=2)
            return
        try:
            if choice == "keep":
                assert data is not None
                made = await asyncio.to_thread(b.keep_both, path, data)
                self.notify(f"version {v.id} written beside it as {made}")
            else:
                out = await asyncio.to_thread(b.restore, path, version=v.id)
                self.remember(path, out, f"restore of {path}")
                self.notify(f"restored {path} to version {v.id} (u undoes it)")
        except Exception as ex:
            self.notify(f"restore failed, nothing changed: {ex}", severity="error")
        self.rebuild(keep=True)
        self.load_versions(e)

    def remember(self, path: str, out: dict[str, Any], what: str) -> None:
        """What undo needs: the moment just before the restore's first new version."""
        ids = [c["version"] for c in out.get("changes", []) if c.get("version")]
        if not ids:
            return
        b = self.gapp.backend
        times = [v.time_ns for v in b.read(lambda s: [s.version(i) for i in ids]) if v]
        if times:
            self.undo_step = UndoStep(path, min(times) - 1, what)

    def action_at_time(self) -> None:
        e = self.entry
        if e is None:
            self.notify("select a directory first", severity="warning")
            return
        if not e.is_dir:  # the file's directory
            e = Entry(e.root_id, e.relpath.rpartition(b"/")[0], True, True)
        self.restore_dir(e)

    @work(exclusive=True, group="restore")
    async def restore_dir(self, e: Entry) -> None:
        app = self.gapp
        b = app.backend
        root = app.root(e.root_id)
        assert root is not None
        path = root.display(e.relpath)
        vs = await asyncio.to_thread(b.versions_under, e.root_id, e.relpath, 5000)
        stops: dict[int, int] = {}
        for v in vs:
            stops[v.time_ns] = stops.get(v.time_ns, 0) + 1
        options = [(ns, f"{app.clock_text(ns / 1e9)}.{ns // 1_000_000 % 1000:03} "
                        f"({app.age(app.now() - ns / 1e9)} ago) · "
                        f"{n} version{'s' if n != 1 else ''}")
                   for ns, n in sorted(stops.items(), reverse=True)[:300]]
        at = await app.push_screen_wait(AtTime(path, options, int(app.now() * 1e9)))
        if at is None:
            return
        await self.confirm_and_restore(path, at, f"{path} as it was at "
                                       f"{app.clock_text(at / 1e9)}", undo_of=None)

    async def confirm_and_restore(self, path: str, at: int, what: str,
                                  undo_of: UndoStep | None) -> None:
        app = self.gapp
        b = app.backend
        try:
            plan = await asyncio.to_thread(b.restore, path, at_ns=at, dry_run=True)
        except Exception as ex:
            self.notify(f"cannot restore {what}: {ex}", severity="error")
            return
        lines = [f"{'restore' if c['action'] == 'write' else 'remove':<7} {c['path']}"
                 for c in plan["changes"]]
        lines += [f"rmdir   {d}/" for d in plan.get("removed_dirs", [])]
        lines += [f"skip    {s['path']}: {s['reason']}" for s in plan.get("skipped", [])]
        writes = sum(1 for c in plan["changes"] if c["action"] == "write")
        removes = len(plan["changes"]) - writes
        effect = Effect(title=("Undo: " if undo_of else "Restore ") + what + "?",
                        summary=f"{writes} restored · {removes} removed · "
                                f"{plan['unchanged']} unchanged", lines=lines,
                        nothing=not plan["changes"] and not plan.get("removed_dirs"))
        choice = await app.push_screen_wait(ConfirmRestore(effect))
        if choice != "replace":
            self.notify("cancelled: nothing changed", timeout=2)
            return
        try:
            out = await asyncio.to_thread(b.restore, path, at_ns=at)
        except Exception as ex:
            self.notify(f"restore failed, nothing changed: {ex}", severity="error")
            return
        if undo_of is not None:
            self.undo_step = None
            self.notify(f"undid the {undo_of.what}")
        else:
            self.remember(path, out, f"restore of {what}")
            self.notify(f"restored {what}: {len(out['changes'])} files (u undoes it)")
        self.rebuild(keep=True)
        if self.entry is not None:
            self.load_versions(self.entry)

    def action_undo(self) -> None:
        if self.undo_step is None:
            self.notify("no restore to undo in this session", severity="warning")
            return
        self.undo(self.undo_step)

    @work(exclusive=True, group="restore")
    async def undo(self, step: UndoStep) -> None:
        await self.confirm_and_restore(step.path, step.at_ns, step.what, undo_of=step)
