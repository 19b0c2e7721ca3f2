"""The assets of the code location: thin Dagster wrappers over :mod:`oil_analysis.pipeline`."""


def asset_modules() -> list:
    """The modules that define assets, in graph order (definitions and the failure sensor load them)."""
    from . import bronze, gold, publish, report, silver

    return [bronze, silver, gold, report, publish]
