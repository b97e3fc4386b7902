"""Domain logic: handlers call these; these call the db layer, storage and aggregation."""
