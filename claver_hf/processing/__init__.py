"""Video processing (ClaverVideoProcessor, ClaverProcessor): filled in by the processing work."""
