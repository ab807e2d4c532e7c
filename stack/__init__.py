"""The composition root: the ``homeward`` command, the demo, the private servers
and the process supervisor.

The only runtime package that may import every other (``homeward`` the shared
vocabulary, ``edge``, ``server``, ``alerts``, ``device_sim``); none of them
imports it.  ``tests/test_architecture.py`` holds these rules.
"""
