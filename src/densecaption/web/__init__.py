"""The local web app: ``densecaption view`` (explore a DCI folder) and ``densecaption annotate`` (write new
DCI records in DCI's three annotation stages). FastAPI on uvicorn, Jinja2 templates, plain JavaScript.

Each app is made by a factory (``view.create_view_app``, ``annotate.create_annotate_app``) that takes the
folders it serves; nothing is global, so tests run several apps side by side. See docs/web.md.
"""
