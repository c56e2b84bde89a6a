"""Guardian: keeps every version of every watched file, so no write can lose data.

Importing this package is cheap on purpose: agent hooks start a process per tool call.
"""

__version__ = "0.1.0"
