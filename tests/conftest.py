import os
import sys

# Test helper modules (oracle.py, ...) live beside this file; --import-mode=importlib
# does not put this directory on sys.path by itself.
sys.path.insert(0, os.path.dirname(__file__))
