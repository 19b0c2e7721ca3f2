"""Oil analysis data product: lab exports → harmonized samples → Stewart limits → classified reports."""

__version__ = "0.1.0"

from . import settings  # noqa: E402,F401  (exports the environment layers before anything reads os.environ)
