"""ClickHouse side of the system. Imports nothing from Dagster."""
