"""Oil analysis data product: lab exports → harmonized samples → Stewart limits → classified reports."""

__version__ = "0.1.0"
