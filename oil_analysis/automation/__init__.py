"""Automation: sensors on raw-file arrival, the weekly limits refresh, downstream notifications."""
