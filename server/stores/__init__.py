"""Store backends: the embedded defaults (SQLite history, in-process buckets) and the shared
ones. The protocols they implement are part of the plugin contract (``server.contract``)."""
