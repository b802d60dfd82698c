import sys

from autoscaler.main import run

sys.exit(run())
