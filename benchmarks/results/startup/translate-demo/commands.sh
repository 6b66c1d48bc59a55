#!/bin/sh
# The commands of the startup suite (attnkit bench --suite startup runs them, each from an
# empty folder). SOURCE = the checkout measured; CACHE = a cache dir (empty for a cold run);
# INPUTS holds CONTEXT.txt (QA_CONTEXT in attnkit/bench/startup.py) and TEXT.txt
# (the argparse module's docstring).
SOURCE=/work/main
CACHE=$(mktemp -d)
INPUTS=$(mktemp -d)
PYTHONPATH=$SOURCE/src ATTNKIT_CACHE_DIR=$CACHE python -m attnkit translate demo
