"""The turn machinery: the pipeline that runs stages, the producer that runs a turn, the
stream log its readers follow, and the SSE encoding of its events."""
