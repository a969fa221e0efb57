"""Queries against a loaded build: the search service, fused ranking, hits and highlighting."""
