"""The `taskmanager` command."""
