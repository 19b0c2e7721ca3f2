"""Spanish agreement for generated text: a table of the nouns we write, with gender and number.

Every determiner or count placed before a noun of the table goes through :func:`det` or
:func:`count`, so "la viscosidad", "las partículas ferrosas", "otro compartimento" and
"otros 2 compartimentos" come out right. :func:`agreement_errors` is the checker the grammar test
runs on every rendered text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Noun:
    """A noun phrase: its singular and plural forms and its gender (``m`` / ``f``)."""

    singular: str
    plural: str
    gender: str


# Heads of the noun phrases the advisor and the report write (the finding labels, units counted).
NOUNS: dict[str, Noun] = {
    n.singular: n
    for n in (
        Noun("desgaste", "desgastes", "m"),
        Noun("ingreso de polvo", "ingresos de polvo", "m"),
        Noun("contaminación con agua", "contaminaciones con agua", "f"),
        Noun("dilución por combustible", "diluciones por combustible", "f"),
        Noun("ingreso de refrigerante", "ingresos de refrigerante", "m"),
        Noun("viscosidad sobre el grado", "viscosidades sobre el grado", "f"),
        Noun("viscosidad bajo el grado", "viscosidades bajo el grado", "f"),
        Noun("partícula ferrosa", "partículas ferrosas", "f"),
        Noun("aceite fuera de limpieza", "aceites fuera de limpieza", "m"),
        Noun("degradación del aceite", "degradaciones del aceite", "f"),
        Noun("hollín por combustión deficiente", "hollines por combustión deficiente", "m"),
        Noun("silicio sin aluminio", "silicios sin aluminio", "m"),
        Noun("sodio o potasio sin agua", "sodios o potasios sin agua", "m"),
        Noun("compartimento", "compartimentos", "m"),
        Noun("equipo", "equipos", "m"),
        Noun("informe", "informes", "m"),
        Noun("ensayo", "ensayos", "m"),
        Noun("muestra", "muestras", "f"),
        Noun("día", "días", "m"),
        Noun("mes", "meses", "m"),
        Noun("hallazgo", "hallazgos", "m"),
        Noun("máquina", "máquinas", "f"),
    )
}
# Plural-only labels (the finding "partículas ferrosas" is always plural).
PLURAL_LABELS = {"partículas ferrosas": "partícula ferrosa"}

# Determiner → {(gender, number): form}.
DETERMINERS = {
    "def": {("m", "s"): "el", ("f", "s"): "la", ("m", "p"): "los", ("f", "p"): "las"},
    "indef": {("m", "s"): "un", ("f", "s"): "una", ("m", "p"): "unos", ("f", "p"): "unas"},
    "other": {("m", "s"): "otro", ("f", "s"): "otra", ("m", "p"): "otros", ("f", "p"): "otras"},
    "this": {("m", "s"): "este", ("f", "s"): "esta", ("m", "p"): "estos", ("f", "p"): "estas"},
}
_FORMS = {form: (kind, key) for kind, forms in DETERMINERS.items() for key, form in forms.items()}


def noun_of(label: str) -> tuple[Noun, str]:
    """The table entry of ``label`` and its number (``s`` / ``p``); KeyError when not in the table."""
    if label in PLURAL_LABELS:
        return NOUNS[PLURAL_LABELS[label]], "p"
    if label in NOUNS:
        return NOUNS[label], "s"
    for n in NOUNS.values():
        if n.plural == label:
            return n, "p"
    raise KeyError(f"noun not in the Spanish noun table: {label!r}")


def det(kind: str, label: str, capital: bool = False) -> str:
    """``label`` with the determiner ``kind`` (def / indef / other / this) that agrees with it."""
    noun, number = noun_of(label)
    form = DETERMINERS[kind][(noun.gender, number)]
    text = f"{form} {label}"
    return text[0].upper() + text[1:] if capital else text


def count(n: int, singular: str, other: bool = False) -> str:
    """``1 compartimento`` / ``2 compartimentos``; ``other=True``: ``otro compartimento`` /
    ``otros 2 compartimentos`` (the determiner agrees with the noun's gender)."""
    noun = NOUNS[singular]
    if other:
        if n == 1:
            return f"{DETERMINERS['other'][(noun.gender, 's')]} {noun.singular}"
        return f"{DETERMINERS['other'][(noun.gender, 'p')]} {n} {noun.plural}"
    return f"{n} {noun.singular if n == 1 else noun.plural}"


def join(items: list[str], conj: str = "y") -> str:
    """``a``, ``a y b``, ``a, b y c``."""
    if not items:
        return ""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" {conj} " + items[-1]


# Verbs we write after a noun of the table: singular and plural forms.
VERBS = {"aparece": "aparecen", "indica": "indican", "es": "son", "sigue": "siguen"}
_VERB_NUMBER = {**{v: "s" for v in VERBS}, **{p: "p" for p in VERBS.values()}}


def verb(singular: str, label: str) -> str:
    """The form of the verb (given in the singular) that agrees with the noun phrase ``label``."""
    return singular if noun_of(label)[1] == "s" else VERBS[singular]


def capitalize(text: str) -> str:
    """First letter upper case, the rest untouched."""
    return text[:1].upper() + text[1:]


def _phrases() -> list[tuple[str, str, str]]:
    """(form, gender, number) of every noun form of the table, longest first."""
    out = []
    for n in NOUNS.values():
        out += [(n.singular, n.gender, "s"), (n.plural, n.gender, "p")]
    for label, sing in PLURAL_LABELS.items():
        out.append((label, NOUNS[sing].gender, "p"))
    return sorted(set(out), key=lambda t: -len(t[0]))


_DET_RE = "|".join(sorted(_FORMS, key=len, reverse=True))


def agreement_errors(text: str) -> list[str]:
    """Agreement errors in ``text``: a determiner (el, la, otros…, optionally followed by a count)
    before a noun of the table that does not agree with it in gender or number, a verb of
    :data:`VERBS` right after such a phrase that does not agree in number, and a count that does
    not agree with its noun (``1 compartimentos``, ``2 compartimento``)."""
    errors = []
    low = text.lower()
    for phrase, gender, number in _phrases():
        p = re.escape(phrase)
        for m in re.finditer(rf"\b({_DET_RE})\s+(?:(\d+)\s+)?{p}\b", low):
            _, (g, num) = _FORMS[m.group(1)]
            n = m.group(2)
            if g != gender or num != number or (n is not None and (int(n) == 1) != (number == "s")):
                errors.append(m.group(0))
            following = re.match(r"\s+(\w+)", low[m.end() :])
            if following and _VERB_NUMBER.get(following.group(1), number) != number:
                errors.append(m.group(0) + following.group(0))
        for m in re.finditer(rf"(?<![\d.,\-/:])(\d+)\s+{p}\b", low):
            if (int(m.group(1)) == 1) != (number == "s"):
                errors.append(m.group(0))
    return errors
