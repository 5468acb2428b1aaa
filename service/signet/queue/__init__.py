"""Jobs between API processes and workers, on Redis Streams."""
