"""Build the skin-lesion classifier site (python build.py --help for retraining, predict and evaluate)."""

import sys

from skinlesion.cli import main

if __name__ == "__main__":
    sys.exit(main())
