"""Visit analytics: access logs (origin and edge) into DuckDB, metrics per ARCHITECTURE."""
