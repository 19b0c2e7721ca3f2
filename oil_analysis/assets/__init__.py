"""Dagster assets: thin wrappers that wire the domain core to storage and orchestration."""
