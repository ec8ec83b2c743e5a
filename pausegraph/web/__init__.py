"""The web inbox and HTTP API (``pausegraph serve``): people and webhooks answer interrupts.

Needs the ``web`` extra (``pip install 'pausegraph[web]'``); ``import
pausegraph`` never imports this package. ``app(graphs, checkpointer)``
returns an ASGI app to serve with uvicorn (or any ASGI server).
"""

from ._app import app

__all__ = ["app"]
