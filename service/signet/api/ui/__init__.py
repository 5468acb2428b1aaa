"""The analysts' web page at ``/ui``: static files shipped in the package, no build step."""
