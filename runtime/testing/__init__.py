"""Testing aids for users of firstspike: the ``firstspike_server`` pytest fixtures (:mod:`.fixtures`).

The fixtures come with the installed package as a pytest plugin (entry point ``pytest11``: ``firstspike_server``),
so a project's tests use them without a conftest. See docs/ci.md.
"""
