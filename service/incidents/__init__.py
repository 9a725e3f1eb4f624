"""Incidents: the workflow from report to closure, evidence, the 72-hour notice."""
