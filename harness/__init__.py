"""Plain helpers shared by tests/ and bench/ (servers, processes, Redis, the evaluation sets); imports neither."""
