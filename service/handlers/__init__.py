"""HTTP handlers, one module a resource: parse, call domain and queries, respond. No SQL here."""
