"""The packaged model bundles: ``default`` (used when --model is not given), ``fast`` (a window every 3 s),
``musicnn`` and ``compact``, and the pretrained weights they start from (``pretrained/``)."""
