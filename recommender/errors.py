"""User-facing errors: one exception family, printed by the CLI as one line, exit status 2
(Infeasible, a subclass: exit status 3).

Anything a user can cause raises GpuplanError. A re-check of a returned plan that fails is a bug
in gpuplan, not in the input: it raises PlanCheckError (never `assert`, which `python -O` drops).
"""

from __future__ import annotations


class GpuplanError(Exception):
    """A problem with the user's input, stated as what is wrong and how to fix it.

    `field` names the input (a CLI option or a scenario path), `value` what was given.
    """

    def __init__(self, field: str, value: object, message: str) -> None:
        self.field = field
        self.value = value
        self.message = message
        super().__init__(f"{field}={value!s}: {message}")


class Infeasible(GpuplanError):
    """Valid input for which no plan can exist before any limit is applied (no accelerator in the
    search space holds the model): the CLI prints it as one line and exits 3, as for an infeasible
    solve, since the input is not wrong, only more than any candidate can carry."""


class PlanCheckError(RuntimeError):
    """A plan the solver returned failed its re-check by the formulas: an internal error."""


def check(condition: bool, what: str) -> None:
    """Raise PlanCheckError unless `condition` holds (the planners' re-checks)."""
    if not condition:
        raise PlanCheckError(what)


def did_you_mean(word: str, choices: list[str], n: int = 3) -> str:
    """A 'did you mean ...?' hint built from the closest known names (difflib ratio)."""
    import difflib

    close = difflib.get_close_matches(word.lower(), [c.lower() for c in choices], n=n, cutoff=0.5)
    by_lower = {c.lower(): c for c in choices}
    if close:
        return "did you mean " + " or ".join(repr(by_lower[c]) for c in close) + "?"
    return ""
