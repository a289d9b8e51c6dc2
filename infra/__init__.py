"""fleet's Pulumi program: declaration only (see __main__.py)."""
