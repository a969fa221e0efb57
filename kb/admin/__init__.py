"""Changing the knowledge base from the browser: accounts, sign-in, uploads, history.

Everything here writes under the admin folder (``Settings.admin_dir``, beside ``corpus/``)
or into ``corpus/tables/`` through :mod:`kb.corpus`; the public read side is untouched.
"""
