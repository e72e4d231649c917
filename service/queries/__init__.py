"""SQL as named constants beside the small async functions that run it, one module a resource."""
