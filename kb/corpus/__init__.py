"""The corpus of council tables on disk: loading and saving, provenance checks, summaries, browsing."""
