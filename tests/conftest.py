import os

# Quieter logs; each backend runs in its own pytest process (see Makefile).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
