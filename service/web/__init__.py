"""Layout templates, static files, the home page and shared view helpers."""
