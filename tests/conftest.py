"""Shared pytest settings: quiet progress bars, CPU only, few threads."""
import os

os.environ.setdefault("LABKIT_PROGRESS", "0")
