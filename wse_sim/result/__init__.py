"""Results as plain data, and the metric definitions."""
