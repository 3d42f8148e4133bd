"""Streamlit live dashboard: prices, spread, alert history."""
