"""Oil analysis data product: lab exports → harmonized samples → Stewart limits → classified reports."""

import warnings

__version__ = "0.1.0"

# `python -m oil_analysis.environments` runs a module this package imports first (through settings);
# runpy warns about that, harmlessly: the module's __main__ block uses the imported copy.
warnings.filterwarnings(
    "ignore", message="'oil_analysis.environments' found in sys.modules", category=RuntimeWarning
)

from . import settings  # noqa: E402,F401  (exports the environment layers before anything reads os.environ)
