"""Did-you-mean: the known name closest to a misspelt one (model ids, config fields, values).

Names are compared with their separators ignored and case folded (`glm5.1`, `GLM-5.1` and
`glm_5_1` are all `glm51`), then by edit distance with transpositions (`openia` is one step from
`openai`), so a suggestion is offered for a typo and never for a different name.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

_SEPARATORS = re.compile(r"[-_./: ]")


def _folded(name: str) -> str:
    return _SEPARATORS.sub("", name).casefold()


def _distance(a: str, b: str) -> int:
    """Edits (insert, delete, replace, swap two neighbours) that turn `a` into `b`."""
    previous2, previous = None, list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, char_b in enumerate(b, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1,
                             previous[j - 1] + (char_a != char_b))
            if (i > 1 and j > 1 and char_a == b[j - 2] and a[i - 2] == char_b
                    and previous2 is not None):
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name `name` most likely misspells, or None when none is close enough."""
    folded = _folded(name)
    # One edit in a short name, two from eight characters on: enough for a typo.
    allowed = 1 if len(folded) < 8 else 2
    best, best_rank = None, (allowed + 1, 0)
    for candidate in known:
        if candidate == name:
            return None
        other = _folded(candidate)
        # Among equally close names, the one of the same length: `glm-5.l` is `glm-5.1` with a
        # wrong key, rather than `glm-5` with one too many.
        rank = (_distance(folded, other), abs(len(other) - len(folded)))
        if rank < best_rank:
            best, best_rank = candidate, rank
    return best


def did_you_mean(name: str, known: Iterable[str], show=lambda found: found) -> str:
    """` Did you mean X?` (with its leading space) or '' when nothing is close."""
    found = closest(name, known)
    return f" Did you mean {show(found)}?" if found is not None else ""
