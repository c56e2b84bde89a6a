"""Screens of the Guardian TUI: three modes (dashboard, alerts, restore) and modals."""
