"""The ``guardian`` command line, one module per command family (see :mod:`.parser`).

Every command that reports takes ``--json`` (those shapes are an API, tested); errors are one
line on stderr with an exit code from :class:`guardian.exitcodes.ExitCode`. Imports of heavy
modules happen inside the commands, so ``guardian --version`` and hooks start fast.
"""
