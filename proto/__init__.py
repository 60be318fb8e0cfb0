"""The wire contract of firstspike: ``proto/firstspike/v1/device.proto`` and its generated Python stubs.

Regenerate with ``python scripts/gen_proto.py`` (a test checks the stubs are current). Used by ``runtime`` only.
"""
