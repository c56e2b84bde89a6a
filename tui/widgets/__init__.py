"""Widgets of the Guardian TUI."""
