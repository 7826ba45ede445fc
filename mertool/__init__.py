"""mertool: a toolkit for micro-expression recognition.

Staged pipeline: index -> align -> keyframes -> flow / dynimg -> train -> report.
Each stage is a plain library function; the ``mertool`` CLI is a thin layer over them.
"""

__version__ = "0.1.0"
