"""Pure domain core: lab readers, harmonization, limits, classification. No dagster import."""
