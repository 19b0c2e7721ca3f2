"""Versioned reference data shipped with the product: essay catalog, name mappings, clients."""
