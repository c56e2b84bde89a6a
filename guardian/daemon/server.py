"""The daemon's control socket: one request per line in, one reply per line out, and a
stream of events for subscribers (see :mod:`guardian.control` for the wire format).

A request names a method; :data:`ControlServer.METHODS` maps each to the handler that runs
it. Requests that need the writer run in the daemon's store thread, so the watcher sees
their versions as already recorded; reads use the daemon's own reader connection.
Only the daemon's user (or root) may talk to it: the socket's 0700 directory says so, and
each connection's peer is checked (``SO_PEERCRED``).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
from anyio.abc import SocketAttribute, SocketStream, TaskStatus
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.memory import MemoryObjectSendStream

from guardian import control
from guardian.errors import DaemonError, GuardianError
from guardian.events import ErrorEvent, Event, VersionRecorded, WarningEvent
from guardian.exitcodes import ExitCode
from guardian.locations import runtime_dir_problem, socket_path
from guardian.service import check_inside, summary

if TYPE_CHECKING:
    from guardian.daemon.loop import Daemon

Params = dict[str, Any]
Handler = Callable[["ControlServer", Params], Awaitable[Any]]

#: Events a slow subscriber may fall behind by before it is dropped.
SUBSCRIBER_BACKLOG = 10_000
#: Tests make it small, to see a subscriber dropped without writing 10,000 files.
TEST_BACKLOG_ENV = "GUARDIAN_TEST_SUBSCRIBER_BACKLOG"


def _backlog() -> int:
    try:
        return max(1, int(os.environ.get(TEST_BACKLOG_ENV, SUBSCRIBER_BACKLOG)))
    except ValueError:
        return SUBSCRIBER_BACKLOG


class ControlServer:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.socket: Path | None = None  # set by serve(), once it has a private place
        self._subscribers: list[MemoryObjectSendStream[dict[str, Any]]] = []
        self._agent_handler: Any = None

    # ----------------------------------------------------------------- events out
    def publish(self, event: Event) -> None:
        """Send an event to every subscriber; one that cannot keep up is dropped."""
        if not self._subscribers:
            return
        d = event.to_dict()
        behind = 0
        for s in list(self._subscribers):
            try:
                s.send_nowait(d)
            except anyio.WouldBlock:
                self._subscribers.remove(s)
                s.close()
                behind += 1
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.remove(s)
                s.close()
        if behind:  # in the log: the reader reconnects (the TUI does) and skips what it missed
            self.daemon.emit(WarningEvent(message=(
                f"{behind} event subscriber{'s' if behind > 1 else ''} fell behind by more "
                f"than {_backlog():,} events and {'were' if behind > 1 else 'was'} dropped")))

    # ----------------------------------------------------------------- the socket
    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The control socket, in a directory only we can use: the standard runtime one, or
        (if another user made that first) a private one under the state dir."""
        d = self.daemon
        path: Path | str = "(no private runtime directory)"
        try:
            path = self.socket = socket_path(d.store.path, create=True)
            problem = runtime_dir_problem()
            if problem is not None:
                d.emit(WarningEvent(message=(
                    f"{problem}, so it is not used for the control socket (another user may "
                    f"have made it to receive what clients send); the socket is {path}")))
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # we hold the writer lock: any socket here is a stale one
            target, fd = control.sun_path(str(path))
            try:
                listener = await anyio.create_unix_listener(target, mode=0o600)
            finally:
                if fd is not None:
                    os.close(fd)
        except (OSError, GuardianError) as e:
            self.socket = None
            d.emit(WarningEvent(message=f"no control socket ({path}): {e}"))
            task_status.started()
            return
        task_status.started()
        try:
            async with listener:
                await listener.serve(self._client)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    async def _client(self, stream: SocketStream) -> None:
        async with stream:
            raw = stream.extra(SocketAttribute.raw_socket, None)  # noqa: S610 (anyio)
            uid = control.peer_uid(raw) if raw is not None else None
            if uid is not None and uid not in (os.geteuid(), 0):
                return  # only our user (or root) may talk to us; the 0700 directory says so too
            reader = BufferedByteReceiveStream(stream)
            while True:
                try:
                    line = await reader.receive_until(b"\n", control.MAX_LINE)
                except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError,
                        anyio.ClosedResourceError, anyio.DelimiterNotFound, OSError):
                    return
                try:
                    req = json.loads(line)
                    if not isinstance(req, dict) or not isinstance(req.get("method"), str):
                        raise ValueError("expected an object with a method")
                    params = req.get("params") or {}
                    if not isinstance(params, dict):
                        raise ValueError("params must be an object")
                except ValueError as e:
                    await _send(stream, control.error_response(None, f"malformed request: {e}"))
                    continue
                rid, method = req.get("id"), req["method"]
                if method == "subscribe":
                    await _send(stream, control.ok_response(rid, {"subscribed": True}))
                    await self._subscribe(stream)
                    return
                if not await _send(stream, await self._reply(rid, method, params)):
                    return

    async def _reply(self, rid: Any, method: str, params: Params) -> dict[str, Any]:
        try:
            result = await self.daemon.monitor.dispatch(method, params, self.dispatch)
            return control.ok_response(rid, result)
        except GuardianError as e:
            to_json = getattr(e.__cause__, "to_json", None)
            data = to_json() if callable(to_json) else None
            return control.error_response(rid, str(e), e.exit_code, data)
        except Exception as e:
            self.daemon.emit(ErrorEvent(
                message=f"request {method!r} failed: {type(e).__name__}: {e}"))
            return control.error_response(rid, f"internal error: {e}", ExitCode.INTERNAL)

    async def _subscribe(self, stream: SocketStream) -> None:
        send, receive = anyio.create_memory_object_stream[dict[str, Any]](_backlog())
        self._subscribers.append(send)
        try:
            async with receive:
                async for event in receive:
                    if not await _send(stream, event):
                        return
        finally:
            if send in self._subscribers:
                self._subscribers.remove(send)

    # ----------------------------------------------------------------- methods
    async def dispatch(self, method: str, params: Params) -> Any:
        handler = self.METHODS.get(method)
        if handler is None:
            raise GuardianError(f"unknown method {method!r}")
        return await handler(self, params)

    async def _ping(self, params: Params) -> Any:
        return {"pong": True, "pid": os.getpid()}

    async def _status(self, params: Params) -> Any:
        d = self.daemon
        return await anyio.to_thread.run_sync(d.status, limiter=d.read_limiter)

    async def _snapshot(self, params: Params) -> Any:
        d = self.daemon
        paths = check_inside([str(p) for p in params.get("paths", [])], list(d.roots.values()))
        session = params.get("session")
        trees = not paths or any(os.path.isdir(p) and not os.path.islink(p) for p in paths)
        if trees and not params.get("full") and d.ready and not d.degraded \
                and await d.sync():
            # The watcher has seen every change up to now: record what is pending. Files
            # named explicitly are still read, so a hook's "before" copy is always fresh.
            out = summary(await d.flush(), d.roots)
            files = [p for p in paths if not os.path.isdir(p) or os.path.islink(p)]
            if files:
                more = await d.in_store(d.service.snapshot, files, session=session)
                for k in ("recorded", "unchanged", "scanned"):
                    out[k] += more[k]
                out["versions"] += more["versions"]
                out["warnings"] += more["warnings"]
                out["labelled"] = more.get("labelled", [])
            if session:  # what the watcher just recorded takes the label
                trees_named = [p for p in paths if os.path.isdir(p) and not os.path.islink(p)]
                out["labelled"] = out.get("labelled", []) + await d.in_store(
                    d.service.label_recent, trees_named, str(session))
            out["method"] = "events"
            return out
        out = await d.in_store(d.service.snapshot, paths, session=session)
        for v in out["versions"]:
            d.emit(VersionRecorded.from_dict(v))
        return out

    async def _restore(self, params: Params) -> Any:
        d = self.daemon
        path = check_inside([str(params.get("path", ""))], list(d.roots.values()))[0]
        out = await self._batch(d.service.restore, path, version=params.get("version"),
                                at_ns=params.get("at_ns"), dry_run=bool(params.get("dry_run")),
                                session=params.get("session"))
        await self._announce([c["version"] for c in out["changes"] if c.get("version")])
        return out

    async def _apply(self, params: Params) -> Any:
        d = self.daemon
        out = await self._batch(d.service.apply, params.get("manifest") or {},
                                str(params.get("base") or "/"),
                                dry_run=bool(params.get("dry_run")),
                                session=params.get("session"),
                                template_dir=params.get("template_dir"))
        await self._announce(list(out.get("versions", [])))
        return out

    async def _batch(self, fn: Callable[..., dict[str, Any]], *args: Any,
                     **kwargs: Any) -> dict[str, Any]:
        """A batch in the store thread; refused or rolled back, the client gets its details."""
        from guardian.errors import BatchError

        try:
            return await self.daemon.in_store(fn, *args, **kwargs)
        except BatchError as e:
            raise DaemonError(str(e), exit_code=e.exit_code) from e

    async def _announce(self, version_ids: list[int]) -> None:
        """A ``version`` event for each version a request recorded."""
        d = self.daemon
        for vid in version_ids:
            v = await d.in_store(d.store.version, vid)
            if v is not None:
                d.emit(VersionRecorded.of(v, d.roots))

    async def _repair(self, params: Params) -> Any:
        from guardian.capture.repair import repair

        d = self.daemon
        return await d.in_store(repair, d.recorder, [str(x) for x in params.get("objects") or []],
                                dict(params.get("reasons") or {}),
                                reread=bool(params.get("reread")))

    async def _recover(self, params: Params) -> Any:
        d = self.daemon
        return await d.in_store(d.service.recover, sweep=bool(params.get("sweep")))

    async def _gc(self, params: Params) -> Any:
        d = self.daemon
        return await d.in_store(d.service.gc, dry_run=bool(params.get("dry_run")),
                                keep_versions=params.get("keep_versions"),
                                keep_days=params.get("keep_days"))

    async def _reconcile(self, params: Params) -> Any:
        self.daemon.request_reconcile(str(params.get("reason", "requested")))
        return {"requested": True}

    # ----------------------------------------------------------------- agents
    async def _agent_hook(self, params: Params) -> Any:
        """One agent hook payload (guardian.agents.handler). A Bash window opens after what
        the watcher saw so far is recorded, and closes after everything the command did has
        come through the watcher (a sync cookie), so its versions fall inside it."""
        from guardian.agents.payloads import PayloadError, from_obj, parse
        from guardian.errors import UsageError

        d = self.daemon
        agent = str(params.get("agent") or "claude")
        try:
            if params.get("payload_file"):
                data = await anyio.to_thread.run_sync(self._read_spilled,
                                                      str(params["payload_file"]))
                p = parse(agent, data)
            else:
                p = from_obj(agent, params.get("payload"))
        except PayloadError as e:
            raise UsageError(f"hook payload: {e}") from None
        if p.tool == "bash" and p.event == "pre":
            await d.flush()
        elif p.tool == "bash" and p.event in ("post", "failed"):
            if d.ready and not d.degraded:
                await d.sync()
            await d.flush()
        return await d.in_store(self._agents().handle, p, daemon=True)

    def _read_spilled(self, path: str) -> bytes:
        """A big payload the hook left beside our socket (in our private directory only)."""
        from guardian.errors import UsageError

        if self.socket is None or os.path.dirname(os.path.abspath(path)) != str(
                self.socket.parent):
            raise UsageError("payload_file must be beside the daemon's socket")
        try:
            with open(path, "rb") as f:
                return f.read()
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def _agents(self) -> Any:
        from guardian.agents.handler import Handler

        if self._agent_handler is None:
            self._agent_handler = Handler(self.daemon.service.writer)
        return self._agent_handler

    async def _agent_alert(self, params: Params) -> Any:
        d = self.daemon
        message = str(params.get("message") or "a hook could not check a call")[:2000]

        def alert() -> Any:
            with d.store.transaction():
                return d.store.raise_alert("agent-hook-failed", "warning", "agent-hook",
                                           message, None)[1]

        return {"new": await d.in_store(alert)}

    async def _undo(self, params: Params) -> Any:
        from guardian.agents.undo import undo

        d = self.daemon
        out = await self._batch(undo, d.service.writer, **params)
        await self._announce(list(out.get("versions", [])))
        return out

    METHODS: ClassVar[dict[str, Handler]] = {
        "agent.hook": _agent_hook,
        "agent.alert": _agent_alert,
        "undo": _undo,
        "ping": _ping,
        "status": _status,
        "snapshot": _snapshot,
        "restore": _restore,
        "apply": _apply,
        "repair": _repair,
        "recover": _recover,
        "gc": _gc,
        "reconcile": _reconcile,
    }


async def _send(stream: SocketStream, obj: dict[str, Any]) -> bool:
    try:
        await stream.send(control.encode(obj))
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        return False
    return True
