"""Where shared state lives: the gate's windows and holds, and the order store.

One backend per URL scheme (``memory://``, ``sqlite:///path``, ``redis://…``,
``postgresql://…``). No backend knows a CA: the gate and the store hand them keys and
numbers. :mod:`certpoll._backends.urls` reads the URLs.
"""
