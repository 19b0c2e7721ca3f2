"""Resources show their effective configuration in the Dagster UI (Deployment → Resources).

Empty resource fields take the settings at every call (``oil_analysis/settings.py``), so the fields
alone would show blanks. A resource with :class:`ShowsEffectiveConfig` puts what it resolves to
when the code location loads (secrets masked) into its description.
"""

from __future__ import annotations

import inspect

_MARK = "Effective configuration (at load):"


class ShowsEffectiveConfig:
    """Mixin for a ``ConfigurableResource``: ``effective_config()`` appended to its description."""

    def effective_config(self) -> dict[str, str]:
        """Setting → effective value (secrets masked), as the resource resolves it now."""
        raise NotImplementedError

    def get_resource_definition(self):
        """The resource definition, described with the effective configuration at load time."""
        definition = super().get_resource_definition()  # type: ignore[misc]
        if _MARK in (definition._description or ""):  # described once (Dagster asks once per step)
            return definition
        lines = "\n".join(f"- {k}: `{v}`" for k, v in self.effective_config().items())
        # Dagster builds the description from the class docstring only; the resolved values are
        # what an operator needs to see, so they are added to it (the definition is cached).
        definition._description = f"{inspect.cleandoc(type(self).__doc__ or '')}\n\n{_MARK}\n{lines}"
        return definition
