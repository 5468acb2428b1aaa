"""Short-lived shared state: cached detection results and rate-limit counters, in Redis
(distributed mode) or in this process's memory (embedded mode)."""
