"""The Grid-X coordinator: Litestar API, SQLite task queue, storage, aggregation, CLI."""
