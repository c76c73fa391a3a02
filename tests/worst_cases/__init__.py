"""Inputs that drive every registered check to its worst status, one module per chapter.

tests/worst_cases/<NN_chapter>.py defines `CASES = {check_id: zero-argument callable returning the Check row}`,
where the callable feeds the chapter module's check function data that makes it fail (or warn, where the
registry says warn is the worst it can give, and why). tests/chapters/test_every_check_can_fail.py runs them all and
fails for any registered check without a case.
"""
