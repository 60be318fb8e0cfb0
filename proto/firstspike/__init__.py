"""firstspike protocol packages, one per major version."""
