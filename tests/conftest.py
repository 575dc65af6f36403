"""Shared fixtures. Fixture plugins live in chatops.testing_fixtures modules and are registered here."""

pytest_plugins = ["chatops.testing_postgres", "chatops.testing_prometheus", "chatops.testing"]
