"""The packaged model bundles: ``default`` (used when --model is not given; ``fast`` is it at stride 3),
``musicnn`` and ``compact``, and the pretrained weights they start from (``pretrained/``)."""
