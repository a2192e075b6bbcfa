"""JSON Schemas of pyward's formats (package data)."""
