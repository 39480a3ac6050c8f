"""The project's task code, driven by ``noxfile.py`` (and ``tasks.py``, which installs nox)."""
