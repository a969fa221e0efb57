"""Shared vocabulary: fields, text rules, the data model, settings, errors, YAML and the text cache."""
