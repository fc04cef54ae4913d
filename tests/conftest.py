"""Shared test setup.

The azure-devops SDK reads AZURE_DEVOPS_CACHE_DIR when it is imported, so it is set here first:
tests must never see a location cache left by another run.
"""
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("AZURE_DEVOPS_CACHE_DIR", tempfile.mkdtemp(prefix="ado-cache-"))
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
