"""The sandbox's smoke suite: pytest against a demo service's front proxy (``SMOKE_BASE_URL``)."""
