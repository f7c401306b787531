"""Dagster side of the system: declarative definitions that call the warehouse. No SQL here."""
