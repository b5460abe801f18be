"""Test doubles shipped for users' own tests and demos (as atomate2's ``utils/testing``).

Never used by the pipeline itself: ``fake_vasp`` is a stand-in VASP executable (``python -m
tdph_workflows.testing.fake_vasp``) that answers with an ASE calculator.
"""
