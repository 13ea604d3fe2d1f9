"""Labeling past one machine: ``mer-live label --ray`` (``ray_label``) and manifests of paths (``manifest``).

Nothing here is imported by the local runtime; ``ray_label`` imports Ray only when a run asks for it.
"""
