"""Hosted tools: tools respd runs itself during a response, one module each (see :mod:`respd.tools.base`)."""
