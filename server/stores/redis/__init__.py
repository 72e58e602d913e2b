"""The shared backend on Redis (``REDIS_URL``): stream logs, cancel signals, rate limits,
stream slots and each session's active turn, so that any number of instances act as one
server. docs/operations.md lists every key and when it expires."""
