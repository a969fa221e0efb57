"""Spreadsheets in and out: reading .xlsx/.csv, the wide and long layouts, ingest and export."""
