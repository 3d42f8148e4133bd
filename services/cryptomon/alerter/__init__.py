"""Discord alerter: signals.alerts + signals.arbitrage -> Discord webhook."""
