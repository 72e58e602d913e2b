"""HTTP handlers: thin readers and writers around the turn runner and the stores."""
