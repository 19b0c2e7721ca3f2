"""Dagster-free steps of one client: bronze intake, silver build, classification with advice, publication."""
