"""Reporting: terminal tables, plots, the report folder (markdown and HTML), and `diff`."""
