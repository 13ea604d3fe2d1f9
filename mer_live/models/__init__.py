"""The packaged model bundle (mer_live/models/default), used when --model is not given."""
