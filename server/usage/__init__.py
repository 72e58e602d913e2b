"""Usage: the ledger of what every answer cost, prices, budget periods and counters."""
