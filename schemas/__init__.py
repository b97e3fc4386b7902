"""The wire contract shared by coordinator, node and CLI: msgspec Structs only, no I/O."""
