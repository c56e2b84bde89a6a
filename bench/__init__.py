"""Guardian's benchmark suite: ``python -m bench [--quick] [--json] [capture|snapshot|resources]``.

Each benchmark drives the real ``guardian`` CLI in subprocesses on real trees in a temp dir, and
reports every figure beside a baseline measured in the same run, with the project's goal and
PASS/FAIL. See ``python -m bench --help``.
"""
