"""The TaskManager HTTP service."""
