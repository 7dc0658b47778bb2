"""Runnable examples; each module has a ``main()`` (``python -m examples.NAME``).

Every example is executed by ``tests/test_examples.py``.
"""
