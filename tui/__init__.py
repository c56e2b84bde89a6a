"""The Textual TUI (dashboard, restore browser). It talks to the core via guardian.client."""
