"""Import this before Feast: it turns off Feast's run-time type checking at import.

Feast decorates its classes with typeguard's ``@typechecked``, which parses, rewrites
and recompiles each decorated module's source every time a process imports Feast:
3.2 s of CPU of the 4.7 s ``import feast`` costs here (medians of two runs,
``python -c "import feast"``), paid by every ``leadscore`` command and every server
worker. The checks only raise ``TypeError`` on a wrong argument type to Feast's API,
which our calls are tested against (tests/integration/test_feature_store.py and the
parity tests); they change no value. typeguard documents the same no-op for
``python -O``; this does it without turning off ``assert`` everywhere else.

The decorator is replaced on the ``typeguard`` module before Feast's modules run
``from typeguard import typechecked``, so it must be imported first, as
:mod:`leadscore.features.store` does; importing Feast earlier elsewhere keeps the checks.
"""

from __future__ import annotations

from typing import Any

import typeguard


def _unchecked(target: Any = None, **_options: Any) -> Any:
    """``@typechecked`` and ``@typechecked(...)`` that return what they decorate."""
    if target is None:
        return lambda decorated: decorated
    return target


typeguard.typechecked = _unchecked
