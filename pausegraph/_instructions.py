"""What a generator step may yield to the scheduler: ``Interrupt`` and ``Effect``.

A step may also yield a generator object, which the trampoline runs as a
sub-call; that needs no class of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs


@attrs.frozen
class Interrupt:
    """Yield this from a step to pause the run until someone answers.

    The value of the ``yield`` expression is the answer given with
    ``Runner.resume(run_id, Resume(answer))``::

        def approve(state):
            ok = yield Interrupt({"question": "approve?", "amount": state["amount"]})
            return {"approved": ok}

    The payload is stored in the checkpoint, so it must be encodable by
    msgpack (dicts, lists, strings, numbers, booleans, ``None``, bytes). On a
    replay the step must yield an equal payload at the same position.
    """

    payload: Any = None


@attrs.frozen(init=False)
class Effect:
    """Yield this from a step to call ``fn(*args, **kwargs)`` exactly once.

    The result is recorded in the step's journal and sent back as the value of
    the ``yield``; when the step is replayed (after a restart, in another
    process) the recorded result is sent instead and ``fn`` is not called::

        def charge(state):
            receipt = yield Effect(stripe_charge, state["card"], amount=100)
            return {"receipt": receipt}

    If ``fn`` raises, an ``EffectError`` naming the original type and message
    is thrown into the step at the ``yield``; a replay throws the same error.
    An effect is recognised on replay by ``fn``'s module and qualified name,
    not by its arguments. The result is normalised through msgpack, so a
    tuple arrives as a list, the same on every path.
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def __init__(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        if not callable(fn):
            msg = f"Effect(fn, ...) needs a callable first, got {fn!r}"
            raise TypeError(msg)
        self.__attrs_init__(fn, args, kwargs)

    @property
    def name(self) -> str:
        """The name that identifies this effect in a journal: ``module.qualname``."""
        fn = self.fn
        module = getattr(fn, "__module__", None) or type(fn).__module__
        qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
        return f"{module}.{qualname}"
