"""Batch labeling: ``mer-live label`` (files in, rows out), row formats, and the same on a Ray cluster."""
