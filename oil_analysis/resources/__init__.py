"""Dagster resources: thin, typed wrappers that build the domain's collaborators from config."""
