"""cryptomon services: exchange producers, Discord alerter and dashboard."""

__version__ = "0.1.0"
