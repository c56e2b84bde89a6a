"""The shipped ``examples/`` run: each is parsed, and what can run outside its real host runs
here, in a scratch "container" (``tests/scratch.py``): the Dockerfile's instructions in order,
the systemd unit's ``ExecStart`` under a fake systemd, the dev container's
``postStartCommand``, the Claude Code hooks. What needs the network, root or a real service
manager is skipped, each saying why."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from guardian.cli.parser import COMMANDS

from .conftest import Watch, wait_until
from .scratch import Scratch, box, no_stdin
from .test_notify import FakeSystemd

__all__ = ["box"]  # the fixture, imported to be found

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


# ----------------------------------------------------------------------------- Dockerfile
def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


#: Instructions not run here, and why.
DOCKER_SKIPPED = {
    "FROM": "the base image: the test runs on this machine's Python",
    "RUN": "creates a system user / installs system-wide from the network: needs root and "
           "an index; this interpreter already has Guardian installed from this tree",
    "COPY": "the build context; checked to be the repository root (pyproject.toml)",
    "USER": "runs as the test's user",
}


def test_the_dockerfile_runs_in_order_in_a_scratch_container(box: Scratch) -> None:
    steps = dockerfile_instructions((EXAMPLES / "docker" / "Dockerfile").read_text())
    env = dict(box.env)
    workdir = box.base
    healthcheck = cmd = None
    stop_signal = signal.SIGTERM
    skipped: list[str] = []

    def mapped(value: str) -> str:
        return str(box.map(value)) if value.startswith("/") else value

    for op, args in steps:
        if op in DOCKER_SKIPPED:
            skipped.append(f"{op}: {DOCKER_SKIPPED[op]}")
            if op == "COPY":
                assert args.split()[0] == "."
                assert (EXAMPLES.parent / "pyproject.toml").is_file()
        elif op == "ENV":
            key, _, value = args.partition("=")
            env[key] = mapped(value)
        elif op == "VOLUME":
            for v in json.loads(args):
                box.map(v).mkdir(parents=True, exist_ok=True)
        elif op == "WORKDIR":
            workdir = box.map(args)
            workdir.mkdir(parents=True, exist_ok=True)
        elif op == "STOPSIGNAL":
            stop_signal = signal.Signals[args]
        elif op == "HEALTHCHECK":
            healthcheck = args.partition(" CMD ")[2]
        elif op == "CMD":
            cmd = [mapped(a) for a in json.loads(args)]
        else:
            raise AssertionError(f"{op}: not handled by this test (add it)")
    assert cmd is not None and healthcheck
    print("\n".join(skipped))
    (workdir / "main.py").write_text("print('hi')\n")
    w = Watch([], Path(env["GUARDIAN_STORE"]), env, argv=cmd, preexec=no_stdin, cwd=workdir)
    try:
        assert w.ready()["store"] == env["GUARDIAN_STORE"]
        check = subprocess.run(["sh", "-c", healthcheck], env=env, cwd=workdir,
                               capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
        assert check.returncode == 0, check.stdout + check.stderr
        w.proc.send_signal(stop_signal)
        assert w.proc.wait(30) == 0  # docker stop waits 10 s before SIGKILL
    finally:
        w.close()
    assert not w.raw, w.raw[:5]
    assert box.written() == {f"tmp/guardian-{os.getuid()}"}, box.written()


def test_the_healthcheck_fails_without_a_daemon(box: Scratch) -> None:
    """A container whose daemon died is reported unhealthy (exit 3 is not forgiven)."""
    steps = dict(dockerfile_instructions((EXAMPLES / "docker" / "Dockerfile").read_text()))
    healthcheck = steps["HEALTHCHECK"].partition(" CMD ")[2]
    store = box.vol / "store"
    env = dict(box.env, GUARDIAN_STORE=str(store))
    (box.root / "a.txt").write_text("a")
    subprocess.run(["guardian", "snapshot", str(box.root)], env=env, check=True,
                   capture_output=True, timeout=60)
    check = subprocess.run(["sh", "-c", healthcheck], env=env, capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=120)
    assert check.returncode != 0


# ----------------------------------------------------------------------------- systemd
UNIT = EXAMPLES / "systemd" / "guardian@.service"


def unit_sections(text: str) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, _, value = line.partition("=")
            current[key.strip()] = value.strip()
    return sections


def escape_path(path: Path) -> str:
    """``systemd-escape --path``."""
    if shutil.which("systemd-escape"):
        return subprocess.run(["systemd-escape", "--path", str(path)], capture_output=True,
                              text=True, check=True).stdout.strip()
    out = []
    for i, c in enumerate(str(path).strip("/")):
        if c == "/":
            out.append("-")
        elif c.isalnum() or c in ":_" or (c == "." and i):
            out.append(c)
        else:
            out.append("".join(f"\\x{b:02x}" for b in c.encode()))
    return "".join(out)


def user_home(box: Scratch) -> Path:
    """A home with ~/.local/bin/guardian, where the unit expects a pip --user/pipx install."""
    home = Path(box.env["HOME"])
    (home / ".local" / "bin").mkdir(parents=True)
    shutil.copy(box.bin / "guardian", home / ".local" / "bin" / "guardian")
    return home


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_the_systemd_unit_verifies(box: Scratch, tmp_path: Path) -> None:
    home = user_home(box)
    units = tmp_path / "units"
    units.mkdir()
    shutil.copy(UNIT, units / UNIT.name)
    instance = units / f"guardian@{escape_path(box.root)}.service"
    p = subprocess.run(["systemd-analyze", "verify", str(instance)], capture_output=True,
                       text=True, env=dict(os.environ, HOME=str(home)), timeout=60)
    assert p.returncode == 0, p.stderr
    assert "guardian@" not in p.stderr, p.stderr  # no warning about our unit


def test_the_systemd_units_execstart_runs_as_a_notify_service(box: Scratch) -> None:
    service = unit_sections(UNIT.read_text())["Service"]
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    home = user_home(box)
    instance = escape_path(box.root)
    specifiers = {"%h": str(home), "%f": str(box.root), "%i": instance, "%%": "%"}
    argv = [re.sub("%[hfi%]", lambda m: specifiers[m.group()], a)
            for a in shlex.split(service["ExecStart"])]
    assert not any("%" in a for a in argv), argv  # every specifier it uses is known here
    runtime = box.base / "run-user"
    runtime.mkdir(mode=0o700)
    sock = box.base / "notify.sock"
    systemd = FakeSystemd(str(sock))
    watchdog_usec = int(service["WatchdogSec"]) * 1_000_000
    env = {k: v for k, v in box.env.items() if not k.startswith("XDG_")}  # a user manager's
    env.update(XDG_RUNTIME_DIR=str(runtime), NOTIFY_SOCKET=str(sock),
               WATCHDOG_USEC=str(watchdog_usec))
    (box.root / "a.txt").write_text("a")
    w = Watch([], box.base, env, argv=argv, preexec=no_stdin, cwd=Path("/"))
    try:
        ready = systemd.wait(lambda m: m.get("READY") == "1", what="READY=1")
        assert "1 files" in ready["STATUS"]
        stores = list((home / ".local" / "state" / "guardian" / "stores").iterdir())
        assert len(stores) == 1
        roots = json.loads((stores[0] / "roots.json").read_text())["roots"]
        assert roots == [str(box.root)]
        w.proc.send_signal(signal.Signals[service["KillSignal"]])
        systemd.wait(lambda m: m.get("STOPPING") == "1", what="STOPPING=1")
        code = w.proc.wait(int(service["TimeoutStopSec"]))
    finally:
        w.close()
        systemd.close()
    # Exit 0: a clean stop, which Restart=on-failure does not restart.
    assert code == 0 and service["Restart"] == "on-failure"
    assert not w.raw, w.raw[:5]


# ----------------------------------------------------------------------------- dev container
def test_the_devcontainers_post_start_command_starts_the_daemon(box: Scratch) -> None:
    dc = json.loads((EXAMPLES / "devcontainer" / "devcontainer.json").read_text())
    feature = json.loads(
        (EXAMPLES / "devcontainer" / "guardian" / "devcontainer-feature.json").read_text())
    # The feature-style install starts the same daemon the same way, with the same store.
    assert feature["postStartCommand"] == dc["postStartCommand"]
    assert feature["containerEnv"] == dc["containerEnv"]
    assert feature["mounts"][0]["target"] == dc["mounts"][0].split("target=")[1].split(",")[0]
    install = EXAMPLES / "devcontainer" / "guardian" / "install.sh"
    assert os.access(install, os.X_OK)
    subprocess.run(["sh", "-n", str(install)], check=True)  # running it needs root + network
    volume = dc["mounts"][0].split("target=")[1].split(",")[0]
    box.map(volume).mkdir(parents=True)
    env = dict(box.env, **{k: str(box.map(v)) if v.startswith("/") else v
                           for k, v in dc["containerEnv"].items()})
    command = dc["postStartCommand"].replace("${containerWorkspaceFolder}", str(box.root))
    command = command.replace(volume, str(box.map(volume)))
    (box.root / "a.txt").write_text("a")
    log = box.map(volume) / "watch.log"
    # postCreateCommand (sudo chown, pip install from the index) needs root and the network.
    subprocess.run(["sh", "-c", command], env=env, check=True, timeout=60,
                   stdin=subprocess.DEVNULL)

    def logged(event: str) -> dict[str, Any] | None:
        if not log.exists():
            return None
        for line in log.read_text().splitlines():
            e = json.loads(line)
            if e["event"] == event:
                return e  # type: ignore[no-any-return]
        return None

    ready = wait_until(lambda: logged("ready"), timeout=60, what="ready in watch.log")
    pid = ready["pid"]
    assert ready["store"] == env["GUARDIAN_STORE"]
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: logged("stopped"), what="stopped in watch.log")
    wait_until(lambda: not Path(f"/proc/{pid}").exists()
               or Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z",
               what="the daemon gone")


# ----------------------------------------------------------------------------- Claude Code
def test_the_claude_code_settings_hooks_record_the_project(box: Scratch) -> None:
    settings = json.loads((EXAMPLES / "claude-code" / "settings.json").read_text())
    assert settings["enabledMcpjsonServers"] == ["guardian"]
    assert all(p.startswith("mcp__guardian__") for p in settings["permissions"]["allow"])
    (box.root / "app.py").write_text("x = 1\n")
    hook_input = json.dumps({"session_id": "s1", "hook_event_name": "PreToolUse",
                             "tool_name": "Edit", "cwd": str(box.root),
                             "tool_input": {"file_path": str(box.root / "app.py")}})
    for event in ("PreToolUse", "PostToolUse"):
        for entry in settings["hooks"][event]:
            re.compile(entry["matcher"])
            assert re.fullmatch(entry["matcher"], "Edit")
            for hook in entry["hooks"]:
                p = subprocess.run(["bash", "-c", hook["command"]], input=hook_input.encode(),
                                   env=dict(box.env, CLAUDE_PROJECT_DIR=str(box.root)),
                                   cwd=box.root, capture_output=True, timeout=hook["timeout"])
                assert p.returncode == 0, p.stderr
        if event == "PreToolUse":
            (box.root / "app.py").write_text("x = 2\n")
    log = subprocess.run(["guardian", "log", str(box.root / "app.py"), "--json"], env=box.env,
                         cwd=box.root, capture_output=True, check=True, timeout=60)
    versions = json.loads(log.stdout)["versions"]
    assert [v["kind"] for v in versions] == ["modified", "created"]


def test_the_mcp_json_names_guardian_mcp() -> None:
    config = json.loads((EXAMPLES / "claude-code" / ".mcp.json").read_text())
    server = config["mcpServers"]["guardian"]
    assert server["type"] == "stdio"
    assert [server["command"], *server["args"]] == ["guardian", "mcp"]


@pytest.mark.skipif("mcp" not in COMMANDS, reason="`guardian mcp` is not in this build yet")
def test_the_mcp_json_command_exists(box: Scratch) -> None:
    config = json.loads((EXAMPLES / "claude-code" / ".mcp.json").read_text())
    server = config["mcpServers"]["guardian"]
    p = subprocess.run([server["command"], *server["args"], "--help"], env=box.env,
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
