"""Runnable examples of s3s3 on local servers."""
