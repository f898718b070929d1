"""The circle's domain: circles, members, submissions (and, later, rounds and critiques)."""
