"""HTTP layer: FastAPI app factory and one folder per endpoint family."""
