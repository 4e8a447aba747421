"""The expert in the loop: experts' verdicts on scored candidates (``store``: SQLite or
PostgreSQL behind one interface, one schema with migrations), the review page (``app``: a Flask
application with Jinja templates, extra ``review``) and what feeds it (``candidates``: the top
candidates per class from a scores table, their light curves as inline SVG)."""
