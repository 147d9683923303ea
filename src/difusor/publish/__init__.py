"""Publish: make a stored release live in one atomic step (and later origins and CDN purge)."""
