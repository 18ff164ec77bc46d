"""A small Django project behind the 2FA gate, using Django's own sessions and ``django.contrib.auth`` as the
identity source. The same project runs under WSGI (``wsgi.py``: ``MFAWsgiMiddleware``) and ASGI (``asgi.py``:
``MFAMiddleware``), with ``/nic/update`` mounted beside it. ``python -m examples.django_site`` serves it.
"""
