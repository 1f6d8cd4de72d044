"""Tests of clustering with named topics (issue 5)."""
