"""The rules: plain functions that never touch request, session or g."""
