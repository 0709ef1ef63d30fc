#!/usr/bin/python3
"""Appends an event to the lab's log: labevent.py KIND [key=value...] (used by the lab's shell scripts)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import labcommon as L  # noqa: E402

L.event(sys.argv[1], **dict(a.split("=", 1) for a in sys.argv[2:]))
