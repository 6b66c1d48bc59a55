#!/bin/sh
# The commands of the startup suite (attnkit bench --suite startup runs them, each from an
# empty folder). SOURCE = the checkout measured; CACHE = a cache dir (empty for a cold run);
# INPUTS holds CONTEXT.txt (QA_CONTEXT in attnkit/bench/startup.py) and TEXT.txt
# (the argparse module's docstring).
SOURCE=/work/main
CACHE=$(mktemp -d)
INPUTS=$(mktemp -d)
PYTHONPATH=$SOURCE/src ATTNKIT_CACHE_DIR=$CACHE python -m attnkit --version
PYTHONPATH=$SOURCE/src ATTNKIT_CACHE_DIR=$CACHE python -m attnkit --help
PYTHONPATH=$SOURCE/src ATTNKIT_CACHE_DIR=$CACHE python -m attnkit demo
PYTHONPATH=$SOURCE/src ATTNKIT_CACHE_DIR=$CACHE python -m attnkit qa 'When was the Eiffel Tower completed?' --context $INPUTS/CONTEXT.txt
printf %s 'When was the Eiffel Tower completed?
' | PYTHONPATH=$SOURCE/src ATTNKIT_CACHE_DIR=$CACHE python -m attnkit qa --context $INPUTS/CONTEXT.txt
printf %s 'When was the Eiffel Tower completed?
How tall is the Eiffel Tower?
Who designed the Eiffel Tower?
' | PYTHONPATH=$SOURCE/src ATTNKIT_CACHE_DIR=$CACHE python -m attnkit qa --context $INPUTS/CONTEXT.txt
PYTHONPATH=$SOURCE/src ATTNKIT_CACHE_DIR=$CACHE python -m attnkit summarize $INPUTS/TEXT.txt
PYTHONPATH=$SOURCE/src ATTNKIT_CACHE_DIR=$CACHE python -m attnkit inspect 'The animal didn'"'"'t cross the street because it was too tired'
PYTHONPATH=$SOURCE/src ATTNKIT_CACHE_DIR=$CACHE python -c 'import json, time
t0 = time.perf_counter()
from attnkit.pretrained import ChatModel
t1 = time.perf_counter()
model = ChatModel.from_pretrained()
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1}))
'
PYTHONPATH=$SOURCE/src ATTNKIT_CACHE_DIR=$CACHE python -c 'import json, time
t0 = time.perf_counter()
from attnkit.pretrained import SentenceEncoder
t1 = time.perf_counter()
model = SentenceEncoder.from_pretrained()
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1}))
'
