"""Causes: the vocabulary shared by our explanations and the lab's expert comments.

The lab's ``Interpretacion`` names the causes it sees (water, fuel, dust, coolant, wear metals,
viscosity, oil degradation, particles). Each finding of the offline advisor maps to one of these
causes, so what a recommendation explains can be compared with what the lab wrote
(``bench/cause_eval.py``).
"""

from __future__ import annotations

CAUSES = ("water", "fuel", "dust", "coolant", "wear", "viscosity", "degradation", "particles")

# Finding of the offline advisor → cause.
FINDING_CAUSE = {
    "water": "water",
    "fuel": "fuel",
    "dust": "dust",
    "coolant": "coolant",
    "wear": "wear",
    "viscosity_high": "viscosity",
    "viscosity_low": "viscosity",
    "debris": "particles",
    "cleanliness": "particles",
    "degradation": "degradation",
    "soot": "degradation",
}
