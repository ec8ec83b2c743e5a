"""The web inbox and HTTP API (``pausegraph serve``): people and webhooks answer interrupts.

Needs the ``web`` extra (``pip install 'pausegraph[web]'``); ``import
pausegraph`` never imports this package. ``app(graphs, checkpointer)``
returns an ASGI app to serve with uvicorn (or any ASGI server).
"""

try:
    import jinja2  # noqa: F401
    import starlette  # noqa: F401
except ImportError as exc:
    msg = (
        f"pausegraph.web needs {exc.name or 'starlette and jinja2'}, which is not installed: "
        "pip install 'pausegraph[web]'"
    )
    raise ImportError(msg, name=__name__) from exc

from ._app import app

__all__ = ["app"]
