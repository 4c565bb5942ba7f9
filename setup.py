"""The one thing setup.cfg cannot declare: the upload's CSV parser in C.

``optional``: where it cannot be compiled the install goes on without it, and
webapp/upload/csv_reader.py reads every file with its pure-Python parser (the
tests in tests/unit/test_fastcsv.py then fail, saying so).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("webapp.upload._fastcsv", ["webapp/upload/_fastcsv.c"], optional=True),
    ]
)
