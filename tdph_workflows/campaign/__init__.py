"""Campaigns: many materials through jobflow/FireWorks and one MongoDB database.

Database settings and the embedded server, job stores, submission of many materials, the
per-material registry, workers and the checks of a cluster set-up.
"""
