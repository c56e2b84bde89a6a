"""Group "conformance": the validators against the public suites, and what their verdicts cost
on realistic documents, each beside the previous verdict measured in the same run.

The previous verdicts are what Guardian ran before issue 9's point 21: YAML composed by
PyYAML alone (the old module, kept in bench/baseline_yaml.py); JSON with duplicate keys an
error (the old default, now the strict preset's); TOML refusing a leading byte order mark.
"""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

from bench.common import Config, Goal, Row, Table, Workspace, progress

SUITES = Path(__file__).resolve().parent.parent / "tests" / "conformance"
MB = 1_000_000
Verdict = Callable[[bytes], bool]  # True: accepted (no error)


# ----------------------------------------------------------------------------- verdicts
def _now(name: str) -> Verdict:
    from guardian.validation import validators

    return lambda data: validators.run(name, data, "bench", timeout=None).ok


def _before() -> dict[str, Verdict]:
    from bench import baseline_yaml
    from guardian.validation import validators

    return {
        "json": lambda data: validators.run("json", data, "bench", {"duplicate_keys": "error"},
                                            timeout=None).ok,
        "toml": lambda data: not data.startswith(b"\xef\xbb\xbf")
        and validators.run("toml", data, "bench", timeout=None).ok,
        "yaml": lambda data: baseline_yaml.VALIDATOR.validate(data, "bench", {}).ok,
    }


def _suites() -> dict[str, list[tuple[bytes, bool]]]:
    """Each suite's cases as (content, valid)."""
    json_dir = SUITES / "JSONTestSuite" / "test_parsing"
    toml_dir = SUITES / "toml-test"
    yaml_dir = SUITES / "yaml-test-suite"
    return {
        "json": [(p.read_bytes(), p.name.startswith("y_"))
                 for p in sorted(json_dir.glob("[yn]_*.json"))],
        "toml": [((toml_dir / n).read_bytes(), n.startswith("valid/"))
                 for n in (toml_dir / "files-toml-1.0.0").read_text().split()],
        "yaml": [(p.read_bytes(), not (p.parent / "error").exists())
                 for p in sorted(yaml_dir.rglob("in.yaml"))],
    }


def suites(ws: Workspace, cfg: Config) -> Table:
    table = Table("conformance.suites",
                  "valid cases accepted and invalid ones caught (JSONTestSuite test_parsing, "
                  "toml-test TOML 1.0, yaml-test-suite data), default options",
                  "the previous verdict (YAML: PyYAML alone; JSON: duplicate keys an error; "
                  "TOML: a leading byte order mark refused)")
    before = _before()
    for fmt, cases in _suites().items():
        now = _now(fmt)
        valid = [d for d, v in cases if v]
        invalid = [d for d, v in cases if not v]
        table.rows += [
            Row(f"{fmt}: valid accepted (of {len(valid)})", sum(map(now, valid)), "",
                sum(map(before[fmt], valid)), Goal(">=", len(valid))),
            Row(f"{fmt}: invalid caught (of {len(invalid)})",
                sum(not now(d) for d in invalid), "", sum(not before[fmt](d) for d in invalid),
                Goal(">=", len(invalid))),
        ]
    return table


# ----------------------------------------------------------------------------- documents
def kubernetes_yaml(size: int) -> bytes:
    """Deployments, ConfigMaps and Services, as a `kubectl get -o yaml` or Helm output."""
    parts: list[str] = []
    total = i = 0
    while total < size:
        doc = f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: service-{i}
  namespace: team-{i % 7}
  labels:
    app.kubernetes.io/name: service-{i}
    app.kubernetes.io/part-of: shop
    tier: "backend"
  annotations:
    deployment.kubernetes.io/revision: "{i % 13 + 1}"
spec:
  replicas: {i % 5 + 1}
  selector:
    matchLabels:
      app: service-{i}
  strategy:
    type: RollingUpdate
    rollingUpdate: {{maxSurge: 25%, maxUnavailable: 0}}
  template:
    metadata:
      labels:
        app: service-{i}
    spec:
      containers:
        - name: app
          image: registry.example.com/shop/service-{i}:1.{i % 40}.{i % 9}
          args: ["--port=8080", "--log-level=info", '--name=service-{i}']
          ports:
            - containerPort: 8080
              protocol: TCP
          env:
            - name: DATABASE_URL
              valueFrom:
                secretKeyRef: {{name: db-{i}, key: url}}
            - name: ENABLED
              value: "true"
          resources:
            limits: {{cpu: 500m, memory: 256Mi}}
            requests: {{cpu: 100m, memory: 128Mi}}
          readinessProbe:
            httpGet: {{path: /healthz, port: 8080}}
            initialDelaySeconds: 5
      volumes:
        - name: config
          configMap:
            name: service-{i}-config
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: service-{i}-config
data:
  app.properties: |
    server.port=8080
    feature.x=true
    # comment line {i}
  greeting: >-
    Hello from service {i},
    folded text.
---
apiVersion: v1
kind: Service
metadata: {{name: service-{i}, namespace: team-{i % 7}}}
spec:
  selector: {{app: service-{i}}}
  ports:
  - port: 80
    targetPort: 8080
---
"""
        parts.append(doc)
        total += len(doc)
        i += 1
    return "".join(parts).encode()


def package_lock_json(size: int) -> bytes:
    """An npm package-lock.json: one object per installed package."""
    packages: dict[str, object] = {"": {"name": "app", "version": "1.0.0"}}
    i = 0
    while len(packages) * 330 < size:
        packages[f"node_modules/pkg-{i}"] = {
            "version": f"{i % 9}.{i % 17}.{i % 5}",
            "resolved": f"https://registry.npmjs.org/pkg-{i}/-/pkg-{i}-{i % 9}.0.0.tgz",
            "integrity": f"sha512-{'A' * 40}{i:08d}==",
            "dev": i % 3 == 0,
            "dependencies": {f"pkg-{j}": f"^{j % 9}.0.0" for j in range(i % 4)},
            "engines": {"node": ">=14"},
        }
        i += 1
    lock = {"name": "app", "version": "1.0.0", "lockfileVersion": 3, "requires": True,
            "packages": packages}
    return json.dumps(lock, indent=2).encode()


def cargo_lock_toml(size: int) -> bytes:
    """A Cargo.lock: one [[package]] table per crate."""
    parts = ["# This file is automatically @generated by Cargo.\nversion = 3\n"]
    total = i = 0
    while total < size:
        deps = "".join(f' "crate-{j}",\n' for j in range(i % 4))
        part = (f'\n[[package]]\nname = "crate-{i}"\nversion = "{i % 9}.{i % 13}.{i % 7}"\n'
                f'source = "registry+https://github.com/rust-lang/crates.io-index"\n'
                f'checksum = "{i:064x}"\ndependencies = [\n{deps}]\n')
        parts.append(part)
        total += len(part)
        i += 1
    return "".join(parts).encode()


def _rates(ours: Callable[[bytes], object], base: Callable[[bytes], object], data: bytes,
           repeats: int) -> tuple[float, float]:
    """MB/s of each, best of ``repeats`` runs taken in turns (after an untimed run of each:
    imports, caches), so that a shared machine's load falls on both alike."""
    best = [float("inf"), float("inf")]
    for fn in (ours, base):
        fn(data)
    for _ in range(repeats):
        for i, fn in enumerate((ours, base)):
            t = time.perf_counter()
            fn(data)
            best[i] = min(best[i], time.perf_counter() - t)
    return len(data) / MB / best[0], len(data) / MB / best[1]


def _row(metric: str, ours: Callable[[bytes], object], base: Callable[[bytes], object],
         data: bytes, repeats: int, goal: Goal | None = None) -> Row:
    value, baseline = _rates(ours, base, data, repeats)
    return Row(metric, value, "MB/s", baseline, goal)


def throughput(ws: Workspace, cfg: Config) -> Table:
    import yaml as pyyaml

    size = 500_000 if cfg.quick else 2_000_000
    repeats = 3 if cfg.quick else cfg.repeats
    table = Table("conformance.throughput",
                  f"validation of realistic {size / MB:g} MB documents, in process, one thread "
                  f"(best of {repeats})",
                  "YAML: the previous validator (PyYAML's events composed by Guardian); "
                  "PyYAML's own C composer; JSON, TOML: json.loads, tomllib")
    kube = kubernetes_yaml(size)
    # The slow paths: a document yaml-rs stops on (a duplicate key near the start, an error
    # at the end) is composed by PyYAML as well.
    duplicate = kube.replace(b"  replicas: 1\n", b"  replicas: 1\n  replicas: 2\n", 1)
    broken = kube + b"key: [unclosed\n"
    lock = package_lock_json(size)
    cargo = cargo_lock_toml(size)
    ours = {name: _now(name) for name in ("json", "toml", "yaml")}
    previous = _before()["yaml"]
    loader = getattr(pyyaml, "CSafeLoader", pyyaml.SafeLoader)
    progress("conformance.throughput: YAML")
    for label, data in (("Kubernetes manifests", kube),
                        ("the same, one duplicate key (slow path)", duplicate),
                        ("the same, a syntax error at the end (slow path)", broken)):
        goal = Goal(">=", 1.0, "ratio") if data is kube else None
        table.rows.append(_row(f"yaml: {label}", ours["yaml"], previous, data, repeats, goal))
    table.rows.append(_row("yaml: Kubernetes manifests, vs PyYAML's C composer", ours["yaml"],
                           lambda b: list(pyyaml.compose_all(b, Loader=loader)), kube, repeats))
    progress("conformance.throughput: JSON, TOML")
    table.rows += [
        _row("json: package-lock.json", ours["json"], json.loads, lock, repeats),
        _row("toml: Cargo.lock", ours["toml"], lambda b: tomllib.loads(b.decode()), cargo,
             repeats),
    ]
    table.notes += [
        "yaml: the verdict is yaml-rs's (YAML 1.2); PyYAML's composition runs only on "
        "documents yaml-rs refuses or flags (duplicate keys, its limits)",
        "json, toml: the same code as before on valid documents (only defaults changed): "
        "the baseline is the bare parser",
    ]
    return table


BENCHMARKS: dict[str, Callable[[Workspace, Config], Table]] = {
    "conformance.suites": suites, "conformance.throughput": throughput}
