"""The Grid-X node daemon: register, heartbeat, long-poll, run tasks in a sandbox, upload."""

__version__ = "0.1.0"
