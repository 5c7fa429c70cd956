import os
import sys

# Helper modules (writer.py, acked.py, rounds.py) live beside the tests.
sys.path.insert(0, os.path.dirname(__file__))
