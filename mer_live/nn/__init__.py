"""The networks in PyTorch: log-mel front end, segment models, pretrained musicnn, and their names.

With ``train/`` and ``export/`` the only place torch lives. ``names`` is torch-free (the CLI's choices
read it), so this ``__init__`` imports nothing.
"""
