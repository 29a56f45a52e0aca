"""s3s3: replicate objects from one S3-compatible store to others.

Importing the package does nothing else: no configuration is read, no connection made and
no log file opened.
"""

__version__ = "2.0.0.dev0"
