"""Tests never read or write the user's own files: GPUPLAN_HOME points at an empty folder."""

import os
import tempfile

os.environ["GPUPLAN_HOME"] = tempfile.mkdtemp(prefix="gpuplan-test-home-")
